"""Dask jobs report progress and can be cancelled while running, as local pool jobs can (issue 17 item 7)."""

import json

import pytest

distributed = pytest.importorskip("distributed")

from .conftest import dask_daemon  # noqa: E402


def test_dask_job_progress_cancel_and_traceback(scroll_copy, cluster):
    d = dask_daemon(scroll_copy, cluster)
    d.start()
    q = d.queue()
    marker = d.volpkg / ".vcd" / "m.jsonl"
    long = q.submit("sleep", {"seconds": 3600, "marker": str(marker)})
    d.wait_for(lambda: (q.get(long)["progress"] or 0) > 0, "progress from the dask worker")
    assert q.cancel(long) == "cancelling"
    d.wait_for(lambda: q.get(long)["state"] == "cancelled", "cancelled")
    # and it stopped on the worker: no task is left executing (it would sleep for an hour)
    client = distributed.Client(cluster)
    try:
        d.wait_for(lambda: sum(client.run(lambda dask_worker: dask_worker.state.executing_count).values()) == 0,
                   "the cancelled task stopped on its worker")
    finally:
        client.close()
    # an unexpected error: retried after the kind's back-off, its traceback in the job log
    crash = q.submit("sleep", {"seconds": 0, "marker": str(d.volpkg / ".vcd" / "no" / "m")}, max_attempts=1)
    d.wait_for(lambda: q.get(crash)["state"] == "failed", "crash recorded")
    assert q.get(crash)["error"].startswith("FileNotFoundError") and "Traceback" in q.log_tail(crash)[-1]
    # the cancelled job never wrote its marker, and nothing ran it again
    ok = q.submit("sleep", {"seconds": 0, "marker": str(marker)})
    d.wait_for(lambda: q.get(ok)["state"] == "done", "a job after the cancel")
    assert [json.loads(line)["job"] for line in marker.read_text().splitlines()] == [ok]
    d.stop()
