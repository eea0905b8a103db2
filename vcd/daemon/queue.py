"""Durable job queue in the daemon's SQLite file (WAL), on sqlite-utils (:mod:`vcd.daemon.store`).

A job row: ``kind``, ``params`` (JSON), ``priority`` (higher first), ``state`` (queued, running,
done, failed, cancelled), ``attempts``, ``lease_until`` (epoch s), ``not_before`` (retry back-off),
timestamps, ``result``/``error`` text, ``progress``, ``dedup_key`` (at most one *queued* job per
key: one ``overlap`` per patch, one ``retrace`` per trace) and ``cancel_requested``. Jobs are queued
through :func:`vcd.jobs.submit`, which takes priority, dedup key and attempts from the job kind.

- :meth:`JobQueue.claim` is one atomic ``UPDATE … RETURNING`` statement (SQLite takes the write lock
  before it reads): two workers never get the same job, and per-kind concurrency limits are checked
  in the same statement.
- A worker holds a lease it renews with :meth:`heartbeat`; :meth:`requeue_expired` returns jobs
  whose lease expired (worker died) to ``queued`` — or ``failed`` after ``max_attempts``.
- :meth:`fail` retries with exponential back-off up to ``max_attempts``, then keeps the job
  ``failed`` with its error.

Other tables: ``kv`` (flags: the scheduler's pause flag, the growth back-off state) and ``job_log``
(the traceback tail ``vcdctl show`` prints). The watcher's fingerprints and trace index are a store of
their own (:class:`vcd.daemon.store_index.SurfaceIndex`). Everything outside this module calls the
named methods below; no SQL is written elsewhere.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils
from sqlite_utils.db import DescIndex

from ..formats.growresult import STOP_KEY, GrowStop
from ..formats.volpkg import state_dir
from .store import SqliteStore

#: a job's states, in the order status tables show them
STATES = ("queued", "running", "done", "failed", "cancelled")

_JOB_COLUMNS = {"id": int, "kind": str, "params": str, "priority": int, "state": str, "attempts": int,
                "max_attempts": int, "lease_until": float, "not_before": float, "worker": str, "created": float,
                "started": float, "finished": float, "progress": float, "message": str, "result": str, "error": str,
                "dedup_key": str, "cancel_requested": int}


def _jobs_table(db: sqlite_utils.Database) -> None:
    db["jobs"].create(_JOB_COLUMNS, pk="id", if_not_exists=True,
                      not_null={"kind", "params", "priority", "state", "attempts", "max_attempts", "not_before",
                                "created", "progress", "cancel_requested"},
                      defaults={"params": "{}", "priority": 0, "state": "queued", "attempts": 0, "max_attempts": 3,
                                "not_before": 0, "progress": 0, "cancel_requested": 0})
    db["jobs"].create_index(["state", DescIndex("priority"), "id"], index_name="jobs_claim", if_not_exists=True)
    # a partial unique index (sqlite-utils' create_index has no WHERE): one queued job per dedup key
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedup ON jobs(dedup_key) "
               "WHERE state = 'queued' AND dedup_key IS NOT NULL")


def _flags_and_log(db: sqlite_utils.Database) -> None:
    db["kv"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["job_log"].create({"job": int, "ts": float, "line": str}, not_null={"job", "ts", "line"}, if_not_exists=True)
    db["job_log"].create_index(["job"], index_name="job_log_job", if_not_exists=True)


def _row(row: dict | None) -> dict | None:
    """A job row with its params parsed; params that are not valid JSON (anyone who can write the file
    can put anything there) become None, which :func:`vcd.jobs.execute` fails once with one line."""
    if row is not None:
        try:
            row["params"] = json.loads(row["params"])
        except (TypeError, ValueError):
            row["params"] = None
    return row


def _loads(text: str | None) -> dict | None:
    try:
        out = json.loads(text) if text else None
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def _marks(values: Iterable) -> str:
    return ",".join("?" * len(list(values)))


#: the claim: lease the best runnable job (highest priority, oldest) in one statement. {kinds} and
#: {limits} are filled with optional ``AND`` clauses (placeholders only).
_CLAIM = ("UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, started = ?, attempts = attempts + 1, "
          "progress = 0 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND not_before <= ?{kinds}{limits} "
          "ORDER BY priority DESC, id LIMIT 1) AND state = 'queued' RETURNING *")
_LIMITED = (" AND kind NOT IN (SELECT kind FROM jobs WHERE state = 'running' AND kind IN ({marks}) GROUP BY kind "
            "HAVING COUNT(*) >= CASE kind {cases} END)")

#: seed/expand jobs that wrote nothing: failed, or done without "written" (except a saturated expansion:
#: its result's ``stop``, :class:`vcd.formats.growresult.GrowStop`)
_EMPTY_GROWTH = (
    "SELECT kind, COUNT(*) AS n FROM jobs WHERE kind IN ('seed', 'expand') AND (state = 'failed' OR (state = 'done' "
    "AND (NOT json_valid(result) OR (json_extract(result, '$.written') IS NULL AND "
    f"COALESCE(json_extract(result, '$.{STOP_KEY}'), '') != '{GrowStop.SATURATED.value}')))) GROUP BY kind")


#: bounds of what one job stores: its error and each job-log line (characters), its result (JSON bytes)
MAX_TEXT = 2000
MAX_RESULT = 64 << 10


def _bounded(text: str | None) -> str | None:
    """``text`` cut to :data:`MAX_TEXT` characters (a failed job's error, a traceback's tail)."""
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT - 40] + f"… (cut, {len(text)} characters)"


QUEUE_FILE = "vcd.sqlite"


def queue_path(volpkg: str | os.PathLike) -> Path:
    """``<volpkg>/.vcd/vcd.sqlite``: the daemon's queue and stores."""
    return state_dir(volpkg) / QUEUE_FILE


class JobQueue(SqliteStore):
    """The queue over ``<volpkg>/.vcd/vcd.sqlite`` (any path works)."""

    NAME = "jobs"
    STEPS = (_jobs_table, _flags_and_log)

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self.jobs = self.db.table("jobs")

    def close(self) -> None:
        if getattr(self, "_surfaces", None) is not None:
            self._surfaces.close()
        super().close()

    @classmethod
    def for_volpkg(cls, volpkg: str | os.PathLike) -> "JobQueue":
        """The queue of a volpkg (``<volpkg>/.vcd/vcd.sqlite``, created on first use).

        Parameters
        ----------
        volpkg : str or os.PathLike
            The volpkg.

        Returns
        -------
        JobQueue
            Open; close it with :meth:`close`.
        """
        return cls(queue_path(volpkg))

    def _one(self, sql: str, args: Iterable = ()) -> dict | None:
        return next(self.db.query(sql, list(args)), None)

    def _set(self, job_id: int, where: str, **values) -> int:
        """``UPDATE jobs SET <values> WHERE id = job_id AND <where>``; returns the rows changed."""
        sets = ", ".join(f"{k} = ?" for k in values)
        return self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND {where}", (*values.values(), job_id)).rowcount

    # ------------------------------------------------------------------ producers
    def submit(self, kind: str, params: dict | None = None, priority: int = 0, dedup_key: str | None = None,
               max_attempts: int = 3) -> int | None:
        """Queue a job row as given (callers go through :func:`vcd.jobs.submit`, which validates the
        params and applies the kind's policy); returns its id, or the id of the already-queued job
        with the same ``dedup_key``."""
        try:
            return self.jobs.insert({"kind": kind, "params": json.dumps(params or {}), "priority": int(priority),
                                           "created": time.time(), "dedup_key": dedup_key,
                                           "max_attempts": int(max_attempts)}).last_rowid
        except sqlite3.IntegrityError:
            row = self._one("SELECT id FROM jobs WHERE dedup_key = ? AND state = 'queued'", [dedup_key])
            return row["id"] if row else None

    # ------------------------------------------------------------------ workers
    def claim(self, worker: str, kinds: list[str] | None = None, lease_s: float = 60.0,
              kind_limits: dict[str, int] | None = None) -> dict | None:
        """Atomically take the best runnable job (highest priority, then oldest) and lease it.

        Parameters
        ----------
        worker : str
            The claiming worker's name (recorded on the row).
        kinds : list of str, optional
            Only these kinds.
        lease_s : float
            Lease length in seconds; a job whose worker stops heartbeating this long is requeued.
        kind_limits : dict of str to int, optional
            Kind -> most jobs of that kind running at once (``[concurrency]``).

        Returns
        -------
        dict or None
            The job row (``id``, ``kind``, ``params`` parsed, ``attempts``, …), or None when nothing is
            runnable.
        """
        now = time.time()
        args: list[Any] = [worker, now + lease_s, now, now]
        kinds_sql = limits_sql = ""
        if kinds is not None:
            kinds_sql = f" AND kind IN ({_marks(kinds)})"
            args += list(kinds)
        limits = {k: int(n) for k, n in (kind_limits or {}).items() if n is not None}
        if limits:
            limits_sql = _LIMITED.format(marks=_marks(limits), cases=" ".join("WHEN ? THEN ?" for _ in limits))
            args += list(limits) + [v for kv in limits.items() for v in kv]
        cur = self.conn.execute(_CLAIM.format(kinds=kinds_sql, limits=limits_sql), args)
        row = cur.fetchone()
        job = dict(zip([c[0] for c in cur.description], row)) if row else None
        cur.close()
        return _row(job)

    def heartbeat(self, job_id: int, lease_s: float = 60.0, progress: float | None = None,
                  message: str | None = None) -> bool:
        """Extend the lease (and record progress); returns True if cancellation was requested."""
        values: dict[str, Any] = {"lease_until": time.time() + lease_s}
        if progress is not None:
            values["progress"] = float(progress)
        if message is not None:
            values["message"] = message[:500]
        self._set(job_id, "state = 'running'", **values)
        row = self._one("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id])
        return bool(row and row["cancel_requested"])

    def complete(self, job_id: int, result: dict | None = None) -> None:
        """Mark a running job done with its result.

        Parameters
        ----------
        job_id : int
            The job.
        result : dict, optional
            JSON-shaped summary; one over :data:`MAX_RESULT` bytes is stored as
            ``{"truncated": true, "bytes": n}``.
        """
        text = json.dumps(result or {})
        if len(text) > MAX_RESULT:  # a result is a summary; a huge one is cut, not stored
            text = json.dumps({"truncated": True, "bytes": len(text)})
        self._set(job_id, "state = 'running'", state="done", finished=time.time(), progress=1,
                  result=text, lease_until=None)

    def fail(self, job_id: int, error: str, retry: bool = True, backoff_s: float = 5.0) -> str:
        """Record a failure of a running job.

        Parameters
        ----------
        job_id : int
            The job.
        error : str
            One line (bounded in length).
        retry : bool
            Whether another attempt may help (False for input errors).
        backoff_s : float
            Seconds before the first retry; doubled per further attempt (``backoff_s × 2^(attempts-1)``).

        Returns
        -------
        str
            The new state: ``queued`` (attempts remain), ``failed``, ``cancelled`` (a queued twin with the
            same dedup key supersedes it) or ``missing``.
        """
        row = self._one("SELECT attempts, max_attempts FROM jobs WHERE id = ?", [job_id])
        if row is None:
            return "missing"
        error = _bounded(error)
        now = time.time()
        if retry and row["attempts"] < row["max_attempts"]:
            return self._back_to_queue(job_id, error=error, lease_until=None, worker=None,
                                       not_before=now + backoff_s * 2 ** (row["attempts"] - 1))
        self._set(job_id, "state = 'running'", state="failed", error=error, finished=now, lease_until=None)
        return "failed"

    def cancelled(self, job_id: int, note: str = "cancelled while running") -> None:
        self._set(job_id, "1", state="cancelled", finished=time.time(), error=_bounded(note), lease_until=None)

    def requeue(self, job_id: int, note: str) -> None:
        """Return a running job to the queue without counting the attempt (graceful shutdown)."""
        with self.transaction():
            row = self._one("SELECT attempts FROM jobs WHERE id = ?", [job_id])
            self._back_to_queue(job_id, attempts=max((row or {}).get("attempts", 1) - 1, 0), lease_until=None,
                                worker=None, message=note)

    def requeue_expired(self, all_running: bool = False) -> list[int]:
        """Jobs whose lease expired (their worker died): back to the queue, or failed after max attempts.
        ``all_running``: every running job, leased or not — what a daemon that just took the lock does,
        since the daemon that ran them is dead (a restart after kill -9 need not wait for the leases)."""
        now = time.time()
        why = "its daemon died" if all_running else "lease expired"
        rows = list(self.db.query("SELECT id, attempts, max_attempts FROM jobs WHERE state = 'running' AND "
                                  "(? OR lease_until < ?)", [int(all_running), now]))
        for r in rows:
            if r["attempts"] >= r["max_attempts"]:
                self._set(r["id"], "state = 'running'", state="failed", finished=now,
                          error=f"worker lost {r['attempts']} times ({why})")
            else:
                self._back_to_queue(r["id"], lease_until=None, worker=None, error=f"worker lost ({why}); requeued")
        return [r["id"] for r in rows]

    def _back_to_queue(self, job_id: int, **values) -> str:
        """Return a running job to ``queued`` (with ``values``). If an identical job (same
        ``dedup_key``) was queued meanwhile, that one will do the work: this one is ``cancelled`` as
        superseded instead (at most one queued job per key)."""
        try:
            self._set(job_id, "state = 'running'", state="queued", **values)
            return "queued"
        except sqlite3.IntegrityError:
            key = self._one("SELECT dedup_key FROM jobs WHERE id = ?", [job_id])["dedup_key"]
            other = self._one("SELECT id FROM jobs WHERE dedup_key = ? AND state = 'queued'", [key])
            self._set(job_id, "state = 'running'", state="cancelled", finished=time.time(), lease_until=None,
                      worker=None, message=f"superseded by queued job {other['id'] if other else '?'}")
            return "cancelled"

    def log(self, job_id: int, line: str) -> None:
        self.db["job_log"].insert({"job": job_id, "ts": time.time(), "line": _bounded(line)})

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: int) -> str:
        """Cancel a queued job now, or ask a running one to stop.

        Parameters
        ----------
        job_id : int
            The job.

        Returns
        -------
        str
            ``cancelled``, ``cancelling`` (running: its next heartbeat sees the request), or the state it
            was already in (``missing`` when there is no such job).
        """
        if self._set(job_id, "state = 'queued'", state="cancelled", finished=time.time()):
            return "cancelled"
        if self._set(job_id, "state = 'running'", cancel_requested=1):
            return "cancelling"
        return (self.get(job_id) or {}).get("state", "missing")

    def retry(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again, its attempts reset.

        Parameters
        ----------
        job_id : int
            The job.

        Returns
        -------
        bool
            True if the job was failed or cancelled and is queued now.
        """
        return bool(self._set(job_id, "state IN ('failed', 'cancelled')", state="queued", not_before=0,
                              cancel_requested=0, error=None, attempts=0))

    def set_kv(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` in the queue's kv table (flags such as ``paused``,
        autoseg's state).

        Parameters
        ----------
        key : str
            The key.
        value : JSON-serialisable
            Replaces any earlier value.
        """
        self.db["kv"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    def get_kv(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key`` (:meth:`set_kv`).

        Parameters
        ----------
        key : str
            The key.
        default : Any
            Returned when the key is not set.

        Returns
        -------
        Any
            The parsed value, or ``default``.
        """
        row = self._one("SELECT value FROM kv WHERE key = ?", [key])
        return json.loads(row["value"]) if row else default

    # ------------------------------------------------------------------ queries
    def get(self, job_id: int) -> dict | None:
        """One job's full row.

        Parameters
        ----------
        job_id : int
            The job.

        Returns
        -------
        dict or None
            Every column, ``params`` parsed (None if not valid JSON; ``result`` stays JSON text); None
            when there is no such job.
        """
        return _row(self._one("SELECT * FROM jobs WHERE id = ?", [job_id]))

    def list(self, state: str | None = None, kind: str | None = None, limit: int = 100) -> list[dict]:
        """Job rows, newest first, without params and results.

        Parameters
        ----------
        state : str, optional
            Only this state (:data:`STATES`).
        kind : str, optional
            Only this kind.
        limit : int
            At most this many rows.

        Returns
        -------
        list of dict
            ``id``, ``kind``, ``state``, ``priority``, ``attempts``, ``progress``, ``created``, ``started``,
            ``finished`` (Unix seconds), ``error``, ``message``.
        """
        where = " AND ".join(c for c, v in (("state = :state", state), ("kind = :kind", kind)) if v) or None
        return list(self.jobs.rows_where(where, {"state": state, "kind": kind}, order_by="id DESC", limit=limit,
                                               select="id, kind, state, priority, attempts, progress, created, "
                                                      "started, finished, error, message"))

    def counts(self) -> dict[tuple[str, str], int]:
        """How many jobs there are per kind and state.

        Returns
        -------
        dict of tuple to int
            ``(kind, state) -> n``; absent pairs have none.
        """
        return {(r["kind"], r["state"]): r["n"] for r in
                self.db.query("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state")}

    def log_tail(self, job_id: int, n: int = 20) -> list[str]:
        rows = self.db.query("SELECT line FROM job_log WHERE job = ? ORDER BY rowid DESC LIMIT ?", [job_id, n])
        return [r["line"] for r in reversed(list(rows))]

    def by_dedup_key(self, key: str) -> dict | None:
        """The newest job with this dedup key (any state), or None."""
        return _row(self._one("SELECT * FROM jobs WHERE dedup_key = ? ORDER BY id DESC LIMIT 1", [key]))

    # ------------------------------------------------------------------ the watcher's store, read-only
    @property
    def surfaces(self):
        """The :class:`~vcd.daemon.store_index.SurfaceIndex` in the same file (opened on first use)."""
        if getattr(self, "_surfaces", None) is None:
            from .store_index import SurfaceIndex
            self._surfaces = SurfaceIndex(self.path)
        return self._surfaces

    def fingerprint(self, surface: str) -> dict | None:
        """Compatibility for callers holding only the queue: :meth:`SurfaceIndex.fingerprint`."""
        return self.surfaces.fingerprint(surface)

    def traces_using(self, patch: str) -> list[str]:
        """Compatibility for callers holding only the queue: :meth:`SurfaceIndex.traces_using`."""
        return self.surfaces.traces_using(patch)

    def running_ids(self, worker: str) -> list[int]:
        """Jobs ``worker`` holds."""
        return [r["id"] for r in self.db.query("SELECT id FROM jobs WHERE state = 'running' AND worker = ?", [worker])]

    def running_jobs(self, workers: list[str]) -> list[dict]:
        """``{"id", "kind", "worker", "started"}`` of the jobs these workers hold."""
        if not workers:
            return []
        return list(self.db.query(f"SELECT id, kind, worker, started FROM jobs WHERE state = 'running' AND worker IN "
                                  f"({_marks(workers)})", workers))

    def running_count(self, workers: list[str]) -> int:
        """How many jobs these workers hold."""
        if not workers:
            return 0
        return self._one(f"SELECT COUNT(*) AS n FROM jobs WHERE state = 'running' AND worker IN ({_marks(workers)})",
                         workers)["n"]

    def last_id(self) -> int:
        """The newest job id (0 when the queue is empty)."""
        return self._one("SELECT COALESCE(MAX(id), 0) AS n FROM jobs")["n"]

    def oldest_queued_created(self) -> float | None:
        """Creation time (epoch s) of the oldest queued job."""
        return self._one("SELECT MIN(created) AS t FROM jobs WHERE state = 'queued'")["t"]

    def done_durations(self, limit: int = 20000) -> list[tuple[str, float]]:
        """``(kind, run seconds)`` of the newest ``limit`` done jobs."""
        return [(r["kind"], max(0.0, r["d"] or 0.0)) for r in self.db.query(
            "SELECT kind, finished - started AS d FROM jobs WHERE state = 'done' AND started IS NOT NULL "
            "ORDER BY id DESC LIMIT ?", [limit])]

    def failed_errors(self) -> dict[str, int]:
        """Failed jobs per error text."""
        return {r["e"]: r["n"] for r in
                self.db.query("SELECT COALESCE(error, '') AS e, COUNT(*) AS n FROM jobs WHERE state = 'failed' GROUP BY e")}

    def empty_growth_counts(self) -> dict[str, int]:
        """Seed/expand jobs that wrote nothing, per kind (see :mod:`vcd.daemon.backoff`)."""
        return {r["kind"]: r["n"] for r in self.db.query(_EMPTY_GROWTH)}

    def finished_growth(self, since_id: int = 0, limit: int = 400) -> list[dict]:
        """The newest finished seed/expand jobs with ``id > since_id``, newest first, results parsed:
        ``{"id", "state", "result": dict | None, "error", "finished"}``."""
        rows = self.db.query("SELECT id, state, result, error, finished FROM jobs WHERE kind IN ('seed', 'expand') "
                             "AND state IN ('done', 'failed') AND id > ? ORDER BY id DESC LIMIT ?",
                             [int(since_id), int(limit)])
        return [{**r, "result": _loads(r["result"])} for r in rows]

    def finished_since(self, since: float) -> dict[str, dict[str, int]]:
        """Jobs finished at or after ``since`` (unix seconds): kind -> state -> count."""
        out: dict[str, dict[str, int]] = {}
        for r in self.db.query("SELECT kind, state, COUNT(*) AS n FROM jobs WHERE finished >= ? GROUP BY kind, state",
                               [since]):
            out.setdefault(r["kind"], {})[r["state"]] = r["n"]
        return out

    def growth_states_since(self, since: float) -> dict[str, int]:
        """Seed/expand jobs finished after ``since`` (epoch s), per state."""
        return {r["state"]: r["n"] for r in self.db.query(
            "SELECT state, COUNT(*) AS n FROM jobs WHERE kind IN ('seed', 'expand') AND finished > ? GROUP BY state",
            [since])}

    def recent_results(self, kind: str, n: int) -> list[dict | None]:
        """Results (parsed; None if unreadable) of the newest ``n`` done jobs of ``kind``, newest first."""
        return [_loads(r["result"]) for r in self.db.query(
            "SELECT result FROM jobs WHERE kind = ? AND state = 'done' ORDER BY id DESC LIMIT ?", [kind, n])]
