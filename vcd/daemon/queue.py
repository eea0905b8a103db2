"""Durable job queue in one SQLite file (WAL mode), via sqlite-utils.

A job row: ``kind``, ``params`` (JSON), ``priority`` (higher first), ``state`` (queued, running,
done, failed, cancelled), ``attempts``, ``lease_until`` (epoch s), ``not_before`` (retry back-off),
timestamps, ``result``/``error`` text, ``progress``, ``dedup_key`` (at most one *queued* job per
key: one ``overlap`` per patch, one ``retrace`` per trace) and ``cancel_requested``.

- :meth:`JobQueue.claim` is atomic (``BEGIN IMMEDIATE`` + conditional ``UPDATE``): two workers
  never get the same job.
- A worker holds a lease it renews with :meth:`heartbeat`; :meth:`requeue_expired` returns jobs
  whose lease expired (worker died) to ``queued`` — or ``failed`` after ``max_attempts``.
- :meth:`fail` retries with exponential back-off up to ``max_attempts``, then keeps the job
  ``failed`` with its error.
- Schema migrations are numbered; ``PRAGMA user_version`` records the applied version.

Other tables: ``fingerprints`` (per surface: tags and mask hash, to detect annotator edits across
restarts), ``trace_uses`` (trace → patch, from provenance: "which traces used patch P?"), ``kv``
(scheduler pause flag and similar).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

STATES = ("queued", "running", "done", "failed", "cancelled")

MIGRATIONS = [
    # 1: jobs
    """
    CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        lease_until REAL,
        not_before REAL NOT NULL DEFAULT 0,
        worker TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT,
        result TEXT,
        error TEXT,
        dedup_key TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(state, priority DESC, id);
    CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedup ON jobs(dedup_key) WHERE state = 'queued' AND dedup_key IS NOT NULL;
    """,
    # 2: annotator fingerprints, provenance, key-value
    """
    CREATE TABLE IF NOT EXISTS fingerprints (
        surface TEXT PRIMARY KEY, tags TEXT, mask TEXT, seen REAL
    );
    CREATE TABLE IF NOT EXISTS trace_uses (
        trace TEXT NOT NULL, patch TEXT NOT NULL, PRIMARY KEY (trace, patch)
    );
    CREATE INDEX IF NOT EXISTS trace_uses_patch ON trace_uses(patch);
    CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);
    """,
    # 3: job log lines (tail shown by `vcdctl show`)
    """
    CREATE TABLE IF NOT EXISTS job_log (
        job INTEGER NOT NULL, ts REAL NOT NULL, line TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS job_log_job ON job_log(job);
    """,
]


def connect(path: str | os.PathLike, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the queue database (WAL, busy timeout so SQLITE_BUSY is retried, not raised)."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn


class JobQueue:
    """The queue over ``<volpkg>/.vcd/vcd.sqlite`` (any path works)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        self.db = sqlite_utils.Database(self.conn)
        self.migrate()

    @classmethod
    def for_volpkg(cls, volpkg: str | os.PathLike) -> "JobQueue":
        return cls(Path(volpkg) / ".vcd" / "vcd.sqlite")

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ schema
    def migrate(self) -> int:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, sql.split(";")):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={i}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return len(MIGRATIONS)

    # ------------------------------------------------------------------ producers
    def submit(self, kind: str, params: dict | None = None, priority: int = 0, dedup_key: str | None = None,
               max_attempts: int = 3) -> int | None:
        """Queue a job; returns its id, or the id of the already-queued job with the same ``dedup_key``."""
        now = time.time()
        try:
            cur = self.conn.execute(
                "INSERT INTO jobs(kind, params, priority, created, dedup_key, max_attempts) VALUES (?,?,?,?,?,?)",
                (kind, json.dumps(params or {}), int(priority), now, dedup_key, int(max_attempts)))
            return cur.lastrowid
        except sqlite3.IntegrityError:
            row = self.conn.execute("SELECT id FROM jobs WHERE dedup_key=? AND state='queued'", (dedup_key,)).fetchone()
            return row[0] if row else None

    # ------------------------------------------------------------------ workers
    def claim(self, worker: str, kinds: list[str] | None = None, lease_s: float = 60.0,
              kind_limits: dict[str, int] | None = None) -> dict | None:
        """Atomically take the best runnable job (highest priority, oldest) and lease it."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            excluded = []
            if kind_limits:
                running = dict(self.conn.execute(
                    "SELECT kind, COUNT(*) FROM jobs WHERE state='running' GROUP BY kind").fetchall())
                excluded = [k for k, lim in kind_limits.items() if lim is not None and running.get(k, 0) >= lim]
            sql = "SELECT id FROM jobs WHERE state='queued' AND not_before <= ?"
            args: list[Any] = [now]
            if kinds is not None:
                sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                args += list(kinds)
            if excluded:
                sql += f" AND kind NOT IN ({','.join('?' * len(excluded))})"
                args += excluded
            sql += " ORDER BY priority DESC, id LIMIT 1"
            row = self.conn.execute(sql, args).fetchone()
            if row is None:
                self.conn.execute("COMMIT")
                return None
            self.conn.execute(
                "UPDATE jobs SET state='running', worker=?, lease_until=?, started=?, attempts=attempts+1, "
                "progress=0 WHERE id=? AND state='queued'", (worker, now + lease_s, now, row[0]))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return self.get(row[0])

    def heartbeat(self, job_id: int, lease_s: float = 60.0, progress: float | None = None,
                  message: str | None = None) -> bool:
        """Extend the lease (and record progress); returns True if cancellation was requested."""
        sets, args = ["lease_until=?"], [time.time() + lease_s]
        if progress is not None:
            sets.append("progress=?")
            args.append(float(progress))
        if message is not None:
            sets.append("message=?")
            args.append(message[:500])
        self.conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=? AND state='running'", (*args, job_id))
        row = self.conn.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    def complete(self, job_id: int, result: dict | None = None) -> None:
        self.conn.execute("UPDATE jobs SET state='done', finished=?, progress=1, result=?, lease_until=NULL "
                          "WHERE id=? AND state='running'", (time.time(), json.dumps(result or {}), job_id))

    def fail(self, job_id: int, error: str, retry: bool = True, backoff_s: float = 5.0) -> str:
        """Record a failure: back to ``queued`` after a back-off while attempts remain, else ``failed``."""
        row = self.conn.execute("SELECT attempts, max_attempts FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return "missing"
        attempts, max_attempts = row
        now = time.time()
        if retry and attempts < max_attempts:
            return self._back_to_queue(job_id, "error=?, lease_until=NULL, worker=NULL, not_before=?",
                                       (error, now + backoff_s * 2 ** (attempts - 1)))
        self.conn.execute("UPDATE jobs SET state='failed', error=?, finished=?, lease_until=NULL WHERE id=? "
                          "AND state='running'", (error, now, job_id))
        return "failed"

    def cancelled(self, job_id: int, note: str = "cancelled while running") -> None:
        self.conn.execute("UPDATE jobs SET state='cancelled', finished=?, error=?, lease_until=NULL WHERE id=?",
                          (time.time(), note, job_id))

    def requeue(self, job_id: int, note: str) -> None:
        """Return a running job to the queue without counting the attempt (graceful shutdown)."""
        self._back_to_queue(job_id, "attempts=MAX(attempts-1,0), lease_until=NULL, worker=NULL, message=?", (note,))

    def requeue_expired(self) -> list[int]:
        """Jobs whose lease expired (their worker died): back to the queue, or failed after max attempts."""
        now = time.time()
        rows = self.conn.execute("SELECT id, attempts, max_attempts FROM jobs WHERE state='running' AND "
                                 "lease_until < ?", (now,)).fetchall()
        for job_id, attempts, max_attempts in rows:
            if attempts >= max_attempts:
                self.conn.execute("UPDATE jobs SET state='failed', finished=?, error=? WHERE id=? AND state='running'",
                                  (now, f"worker lost {attempts} times (lease expired)", job_id))
            else:
                self._back_to_queue(job_id, "lease_until=NULL, worker=NULL, error=?",
                                    ("worker lost (lease expired); requeued",))
        return [r[0] for r in rows]

    def _back_to_queue(self, job_id: int, sets: str, args: tuple) -> str:
        """Return a running job to ``queued`` (``sets``: extra ``col=?`` assignments). If an identical job
        (same ``dedup_key``) was queued meanwhile, that one will do the work: this one is ``cancelled``
        as superseded instead (at most one queued job per key)."""
        try:
            self.conn.execute(f"UPDATE jobs SET state='queued', {sets} WHERE id=? AND state='running'",
                              (*args, job_id))
            return "queued"
        except sqlite3.IntegrityError:
            key = self.conn.execute("SELECT dedup_key FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            other = self.conn.execute("SELECT id FROM jobs WHERE dedup_key=? AND state='queued'", (key,)).fetchone()
            self.conn.execute("UPDATE jobs SET state='cancelled', finished=?, lease_until=NULL, worker=NULL, "
                              "message=? WHERE id=? AND state='running'",
                              (time.time(), f"superseded by queued job {other[0] if other else '?'}", job_id))
            return "cancelled"

    def log(self, job_id: int, line: str) -> None:
        self.conn.execute("INSERT INTO job_log(job, ts, line) VALUES (?,?,?)", (job_id, time.time(), line[:2000]))

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: int) -> str:
        """Cancel a queued job now, or ask a running one to stop. Returns the resulting state."""
        cur = self.conn.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=? AND state='queued'",
                                (time.time(), job_id))
        if cur.rowcount:
            return "cancelled"
        cur = self.conn.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state='running'", (job_id,))
        return "cancelling" if cur.rowcount else (self.get(job_id) or {}).get("state", "missing")

    def retry(self, job_id: int) -> bool:
        cur = self.conn.execute("UPDATE jobs SET state='queued', not_before=0, cancel_requested=0, error=NULL, "
                                "attempts=0 WHERE id=? AND state IN ('failed','cancelled')", (job_id,))
        return bool(cur.rowcount)

    def set_kv(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          (key, json.dumps(value)))

    def get_kv(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ------------------------------------------------------------------ queries
    def get(self, job_id: int) -> dict | None:
        cur = self.conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,))
        row = cur.fetchone()
        if row is None:
            return None
        job = dict(zip([c[0] for c in cur.description], row))
        job["params"] = json.loads(job["params"])
        return job

    def list(self, state: str | None = None, kind: str | None = None, limit: int = 100) -> list[dict]:
        sql, args = "SELECT id, kind, state, priority, attempts, progress, created, started, finished, error, message " \
                    "FROM jobs WHERE 1=1", []
        if state:
            sql += " AND state=?"
            args.append(state)
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        cur = self.conn.execute(sql, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def counts(self) -> dict[tuple[str, str], int]:
        return {(k, s): n for k, s, n in self.conn.execute("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")}

    def log_tail(self, job_id: int, n: int = 20) -> list[str]:
        rows = self.conn.execute("SELECT line FROM job_log WHERE job=? ORDER BY rowid DESC LIMIT ?", (job_id, n)).fetchall()
        return [r[0] for r in reversed(rows)]

    # ------------------------------------------------------------------ fingerprints and provenance
    def fingerprint(self, surface: str) -> dict | None:
        row = self.conn.execute("SELECT tags, mask FROM fingerprints WHERE surface=?", (surface,)).fetchone()
        return None if row is None else {"tags": json.loads(row[0]), "mask": row[1]}

    def set_fingerprint(self, surface: str, tags: list[str], mask: str | None) -> None:
        self.conn.execute("INSERT INTO fingerprints(surface, tags, mask, seen) VALUES (?,?,?,?) ON CONFLICT(surface) "
                          "DO UPDATE SET tags=excluded.tags, mask=excluded.mask, seen=excluded.seen",
                          (surface, json.dumps(sorted(tags)), mask, time.time()))

    def forget_missing(self, present: set[str]) -> int:
        """Drop fingerprints (and trace uses) of surfaces no longer on disk; returns how many."""
        gone = [r[0] for r in self.conn.execute("SELECT surface FROM fingerprints") if r[0] not in present]
        self.conn.executemany("DELETE FROM fingerprints WHERE surface=?", [(g,) for g in gone])
        self.conn.executemany("DELETE FROM trace_uses WHERE trace=?", [(g,) for g in gone])
        return len(gone)

    def record_trace(self, trace: str, patches: list[str]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM trace_uses WHERE trace=?", (trace,))
            self.conn.executemany("INSERT OR IGNORE INTO trace_uses(trace, patch) VALUES (?,?)",
                                  [(trace, p) for p in patches])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def traces_using(self, patch: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT trace FROM trace_uses WHERE patch=? ORDER BY trace", (patch,))]
