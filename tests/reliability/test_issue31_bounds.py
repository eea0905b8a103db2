"""Issue 31 item 3: one job param cannot fill the disk. Params are bounded at submit time (size of a
value, number of keys) with one line, and what a failed job stores (error, log tail) is bounded."""

from __future__ import annotations

import pytest

from vcd import jobs
from vcd.daemon.queue import JobQueue
from vcd.errors import InputError

HUGE = "x" * (10 << 20)


@pytest.mark.parametrize("params, words", [
    ({"src_dir": HUGE}, "too large"),
    ({f"k{i}": 1 for i in range(500)}, "too many"),
])
def test_submit_bounds_params_with_one_line(tmp_path, params, words):
    q = JobQueue(tmp_path / "vcd.sqlite")
    with pytest.raises(InputError, match=words) as err:
        jobs.submit(q, "trace", params)
    assert len(str(err.value)) < 500 and "\n" not in str(err.value)
    assert q.last_id() == 0


def test_a_failed_job_stores_a_bounded_error(daemon_factory):
    d = daemon_factory(workers=1).start()
    q = d.queue()
    # straight into the queue (any process that can write the file can), past submit's check
    jid = q.submit("sleep", {"seconds": "1" * 100 + "x" * (2 << 20)})
    d.wait_for(lambda: q.get(jid)["state"] == "failed", "the job with a 2 MB param to fail")
    job = q.get(jid)
    assert len(job["error"]) <= 2000 and "\n" not in job["error"], len(job["error"])
    assert sum(len(line) for line in q.log_tail(jid, 1000)) <= 3 * 2000
    assert len(d.log_text()) < 200_000  # the daemon's log line is bounded too
    assert d.proc.poll() is None
