"""The SQLite stores on their own (real files): dedup keys stay unique when jobs return to the queue,
the claim honours priority and per-kind limits in one statement, the watcher's index is its own store."""

import sqlite3

from vcd.daemon.queue import JobQueue
from vcd.daemon.store_index import SurfaceIndex


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


def test_claim_takes_priority_then_age_and_honours_kind_limits(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    low = q.submit("sleep", {}, priority=0)
    t1, t2 = q.submit("trace", {}, priority=7), q.submit("trace", {}, priority=7)
    ov = q.submit("overlap", {}, priority=5)
    assert q.claim("w", kind_limits={"trace": 1})["id"] == t1
    assert q.claim("w", kind_limits={"trace": 1})["id"] == ov  # the second trace waits for the first
    assert q.claim("w", kinds=["trace"], kind_limits={"trace": 1}) is None
    q.complete(t1, {"ok": True})
    job = q.claim("w", kind_limits={"trace": 1, "sleep": None})
    assert job["id"] == t2 and job["state"] == "running" and job["attempts"] == 1 and job["params"] == {}
    assert q.claim("w")["id"] == low and q.claim("w") is None
    assert sorted(q.running_ids("w")) == sorted([low, ov, t2])
    assert q.running_count(["w", "x"]) == 3 and q.running_count([]) == 0
    assert q.get(t1)["state"] == "done" and q.done_durations()[0][0] == "trace"


def test_failed_attempts_back_off_then_fail_and_retry_resets(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    jid = q.submit("expand", {}, max_attempts=2)
    q.claim("w")
    assert q.fail(jid, "boom", backoff_s=1000.0) == "queued"
    assert q.claim("w") is None  # backing off
    assert q.get(jid)["not_before"] > q.get(jid)["created"] + 900
    assert q.retry(jid) is False  # only failed/cancelled jobs are retried by hand
    q.conn.execute("UPDATE jobs SET not_before = 0")  # the wait is over
    q.claim("w")
    assert q.fail(jid, "boom again") == "failed" and q.failed_errors() == {"boom again": 1}
    assert q.empty_growth_counts() == {"expand": 1} and q.finished_growth()[0]["error"] == "boom again"
    assert q.retry(jid) and q.get(jid)["attempts"] == 0 and q.get(jid)["state"] == "queued"


def test_transaction_is_all_or_nothing_and_nests(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    try:
        with q.transaction():
            q.submit("sleep", {})
            with q.transaction():
                q.set_kv("paused", True)
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert q.counts() == {} and q.get_kv("paused") is None
    with q.transaction():
        q.submit("sleep", {})
        q.set_kv("paused", True)
    assert q.counts() == {("sleep", "queued"): 1} and q.get_kv("paused") is True


def test_a_file_from_the_previous_schema_is_adopted(tmp_path):
    """A queue file written before the stores moved to sqlite-utils (tables made by raw DDL, only
    ``PRAGMA user_version``) opens with its jobs and fingerprints intact."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}',
            priority INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 3, lease_until REAL, not_before REAL NOT NULL DEFAULT 0, worker TEXT,
            created REAL NOT NULL, started REAL, finished REAL, progress REAL NOT NULL DEFAULT 0, message TEXT,
            result TEXT, error TEXT, dedup_key TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX jobs_claim ON jobs(state, priority DESC, id);
        CREATE UNIQUE INDEX jobs_dedup ON jobs(dedup_key) WHERE state = 'queued' AND dedup_key IS NOT NULL;
        CREATE TABLE fingerprints (surface TEXT PRIMARY KEY, tags TEXT, mask TEXT, seen REAL);
        CREATE TABLE trace_uses (trace TEXT NOT NULL, patch TEXT NOT NULL, PRIMARY KEY (trace, patch));
        CREATE INDEX trace_uses_patch ON trace_uses(patch);
        CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE job_log (job INTEGER NOT NULL, ts REAL NOT NULL, line TEXT NOT NULL);
        INSERT INTO jobs(kind, params, created, dedup_key) VALUES ('overlap', '{"segment": "p1"}', 1.0, 'overlap:p1');
        INSERT INTO fingerprints VALUES ('p1', '["approved"]', NULL, 1.0);
        INSERT INTO trace_uses VALUES ('t1', 'p1');
        PRAGMA user_version = 3;
    """)
    conn.close()
    q, ix = JobQueue(path), SurfaceIndex(path)
    assert q.submit("overlap", {"segment": "p1"}, dedup_key="overlap:p1") == 1
    assert q.claim("w")["params"] == {"segment": "p1"}
    assert ix.fingerprint("p1") == {"tags": ["approved"], "mask": None} and ix.traces_using("p1") == ["t1"]


def test_fingerprints_of_deleted_surfaces_are_forgotten(tmp_path):
    ix = SurfaceIndex(tmp_path / "q.sqlite")
    for name in ("auto_grown_1", "auto_grown_2", "auto_trace_1"):
        ix.set_fingerprint(name, [], None)
    ix.record_trace("auto_trace_1", ["auto_grown_1", "auto_grown_2"])
    assert ix.forget_missing({"auto_grown_1", "auto_trace_1"}) == 1
    assert ix.fingerprint("auto_grown_2") is None and ix.fingerprint("auto_grown_1") is not None
    assert ix.traces_using("auto_grown_1") == ["auto_trace_1"]
    assert ix.forget_missing({"auto_grown_1"}) == 1 and ix.traces_using("auto_grown_1") == []
