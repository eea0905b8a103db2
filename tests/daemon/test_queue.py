"""The SQLite job queue on its own (real file): dedup keys stay unique when jobs return to the queue."""

from vcd.daemon.queue import JobQueue


def test_job_returning_to_queue_is_superseded_by_an_identical_queued_job(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    first = q.submit("retrace", {"trace": "t1"}, dedup_key="retrace:t1")
    job = q.claim("w1")
    assert job["id"] == first
    # a mask edit while it runs queues the same retrace again
    second = q.submit("retrace", {"trace": "t1"}, dedup_key="retrace:t1")
    assert second != first
    # the first fails and would be retried: the queued twin does the work instead, nothing crashes
    assert q.fail(first, "boom", retry=True) == "cancelled"
    assert q.get(first)["state"] == "cancelled" and f"superseded by queued job {second}" in q.get(first)["message"]
    assert q.get(second)["state"] == "queued"
    # the same for a graceful requeue and an expired lease
    job = q.claim("w1")
    third = q.submit("retrace", {"trace": "t1"}, dedup_key="retrace:t1")
    q.requeue(job["id"], "shutdown")
    assert q.get(job["id"])["state"] == "cancelled" and q.get(third)["state"] == "queued"
    job = q.claim("w1", lease_s=-1.0)
    fourth = q.submit("retrace", {"trace": "t1"}, dedup_key="retrace:t1")
    q.requeue_expired()
    assert q.get(job["id"])["state"] == "cancelled" and q.get(fourth)["state"] == "queued"
    # without a twin, a failed job goes back to the queue as before
    job = q.claim("w1")
    assert q.fail(job["id"], "boom", retry=True) == "queued"


def test_fingerprints_of_deleted_surfaces_are_forgotten(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    for name in ("auto_grown_1", "auto_grown_2", "auto_trace_1"):
        q.set_fingerprint(name, [], None)
    q.record_trace("auto_trace_1", ["auto_grown_1", "auto_grown_2"])
    assert q.forget_missing({"auto_grown_1", "auto_trace_1"}) == 1
    assert q.fingerprint("auto_grown_2") is None and q.fingerprint("auto_grown_1") is not None
    assert q.traces_using("auto_grown_1") == ["auto_trace_1"]
    assert q.forget_missing({"auto_grown_1"}) == 1 and q.traces_using("auto_grown_1") == []
