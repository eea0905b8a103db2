"""``vcd.jobs.execute``: the one mapping from how a job ended to an Outcome (in-process, real jobs)."""

import json

from vcd.daemon.pool import record_outcome
from vcd.daemon.queue import JobQueue
from vcd.jobs import JobContext, execute


class _Log:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda event, **kw: self.lines.append((level, event, kw))


def test_outcomes_done_input_error_crash_cancel_and_unknown_kind(tmp_path):
    marker = tmp_path / "m.jsonl"
    done = execute("sleep", {"seconds": 0, "marker": str(marker)})
    assert done.state == "done" and done.result["slept"] >= 0 and json.loads(marker.read_text())["job"] is None
    assert done.result["cpu_seconds"] >= 0  # recorded here, the path both executors share (issue 28)
    # the user's input (a VcdError): failed, never retried
    bad = execute("overlap", {"paths": str(tmp_path), "segment": "auto_grown_missing"})
    assert bad.state == "failed" and not bad.retry and "meta.json" in bad.error and not bad.traceback
    bad_params = execute("sleep", {"seconds": "long"})
    assert bad_params.state == "failed" and not bad_params.retry and "'seconds'" in bad_params.error
    assert not execute("no_such_kind", {}).retry
    # anything else: failed, retried, with its traceback
    crash = execute("sleep", {"seconds": 0, "marker": str(tmp_path / "no" / "dir" / "m")})
    assert crash.state == "failed" and crash.retry and crash.error.startswith("FileNotFoundError")
    assert "Traceback" in crash.traceback
    cancel = execute("sleep", {"seconds": 5}, JobContext(cancelled_cb=lambda: True))
    assert cancel.state == "cancelled"


def test_record_outcome_applies_the_kinds_retry_policy(tmp_path):
    q, log = JobQueue(tmp_path / "q.sqlite"), _Log()
    jid = q.submit("sleep", {"seconds": 0, "marker": str(tmp_path / "no" / "m")}, max_attempts=2)
    job = q.claim("w")
    assert record_outcome(q, job, execute(job["kind"], job["params"]), log) == "queued"
    assert "FileNotFoundError" in q.log_tail(jid)[-1] and log.lines[-1][:2] == ("error", "job_failed")
    assert q.get(jid)["not_before"] > q.get(jid)["created"]  # the kind's back-off before the retry
    jid2 = q.submit("sleep", {"seconds": "x"})
    job2 = q.claim("w", kinds=["sleep"])
    assert job2["id"] == jid2
    assert record_outcome(q, job2, execute(job2["kind"], job2["params"]), log) == "failed"  # input: no retry
    assert q.get(jid2)["attempts"] == 1 and log.lines[-1][:2] == ("warning", "job_failed")
