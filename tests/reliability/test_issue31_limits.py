"""Issue 31 item 6: jobs have limits. Every kind has a wall-time limit (``JobSpec.wall_seconds``,
``[wall_seconds]`` in vcd.toml) after which the job fails with one line and its worker is replaced;
numbers are finite; params that are not valid JSON fail the job once with one line, no worker crash."""

from __future__ import annotations

import time

import pytest

from vcd import jobs
from vcd.errors import InputError

from ..daemon.conftest import QUIET

LIMITED = QUIET + """
[wall_seconds]
sleep = 2
"""


@pytest.mark.parametrize("kind, params", [
    ("sleep", {"seconds": 1e999}),
    ("sleep", {"seconds": float("nan")}),
    ("sleep", {"seconds": "inf"}),
    ("seed", {"volume": "volumes/v", "paths": "paths", "step_size": float("nan")}),
])
def test_numbers_must_be_finite(kind, params):
    with pytest.raises(InputError, match="finite"):
        jobs.get_spec(kind).parse(params)


def test_wall_time_limit_fails_the_job_and_replaces_the_worker(daemon_factory):
    d = daemon_factory(LIMITED, workers=1).start()
    q = d.queue()
    jid = jobs.submit(q, "sleep", {"seconds": 1e23})
    d.wait_for(lambda: q.get(jid)["state"] == "failed", "the sleep job to fail at its wall-time limit")
    job = q.get(jid)
    assert "wall-time limit" in job["error"] and "\n" not in job["error"] and job["attempts"] == 1, job
    after = jobs.submit(q, "sleep", {"seconds": 0.01})  # the replacement worker runs the next job
    d.wait_for(lambda: q.get(after)["state"] == "done", "a job on the replaced worker")
    assert len(d.events("job_wall_time")) == 1
    assert "Traceback" not in d.log_text() and d.proc.poll() is None


def test_params_that_are_not_json_fail_once_without_a_worker_crash(daemon_factory):
    d = daemon_factory(workers=1).start()
    q = d.queue()
    # any process that can write the queue file can put anything there (the README's threat model)
    jid = q.conn.execute("INSERT INTO jobs (kind, params, priority, created) VALUES ('sleep', '{oops', 0, ?)",
                         [time.time()]).lastrowid
    d.wait_for(lambda: q.get(jid)["state"] in ("failed", "done"), "the malformed job to end")
    job = q.get(jid)
    assert job["state"] == "failed" and job["attempts"] == 1 and "JSON" in job["error"], job
    assert "\n" not in job["error"]
    assert not d.events("worker_died") and "Traceback" not in d.log_text() and d.proc.poll() is None
