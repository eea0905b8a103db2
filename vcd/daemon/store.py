"""The SQLite file under the daemon's stores (``<volpkg>/.vcd/vcd.sqlite``), via sqlite-utils.

:class:`SqliteStore` opens one connection (WAL, ``synchronous=NORMAL``, a busy timeout so a busy
file is waited for, not an error), wraps it in a :class:`sqlite_utils.Database` (``self.db``) and
gives every store the same two tools:

- :meth:`SqliteStore.transaction` — ``with store.transaction(): ...`` runs the block in one write
  transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so two processes never
  interleave); nested blocks join the outer one.
- :meth:`SqliteStore.migrate` — schema steps, each a function of the ``Database`` that creates tables
  (``Table.create(..., if_not_exists=True)``) or changes them (``Table.transform``); the steps a store
  has applied are recorded per store in the ``schema_versions`` table. Steps are idempotent, so a
  file written by an older vcd (which kept only ``PRAGMA user_version``) is adopted as it is.

The stores on it: :class:`vcd.daemon.queue.JobQueue` (jobs, flags, job logs) and
:class:`vcd.daemon.store_index.SurfaceIndex` (the watcher's fingerprints and the trace → patch index).
SQL is written only in these store modules; everything else calls their named methods.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from ..errors import FormatError

Step = Callable[[sqlite_utils.Database], None]

#: what to do about a damaged database file (``vcdctl repair``: :func:`vcd.daemon.repair.rebuild_state`)
REPAIR_FIX = ("stop the daemon and run `vcdctl --volpkg {volpkg} repair` (moves the file aside, never deletes it, "
              "and rebuilds the queue from paths/ and traces/)")


class DamagedDatabase(FormatError):
    """The daemon's SQLite file is not a database any more (truncated, overwritten)."""


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "the file is broken" errors (``database disk image is malformed``, ``file is
    not a database``) — not for a busy or full disk (``OperationalError``) or a constraint."""
    return type(exc) is sqlite3.DatabaseError


def damaged(path: str | os.PathLike, exc: BaseException) -> DamagedDatabase:
    """The :class:`DamagedDatabase` error for the database at ``path`` (``<volpkg>/.vcd/vcd.sqlite``),
    naming ``vcdctl repair``."""
    volpkg = Path(path).resolve().parent.parent
    return DamagedDatabase(path, f"the daemon's database is damaged ({exc})", REPAIR_FIX.format(volpkg=volpkg))


def connect(path: str | os.PathLike, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the database file (WAL, busy timeout ``timeout`` s so SQLITE_BUSY is waited out)."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # checkpoint (which syncs the file) every ~32 MB of WAL, not every 4 MB: a commit per claim and per
    # completion otherwise spends up to a third of the queue's time in checkpoints on a busy disk. The
    # WAL file then stays up to ~32 MB (cutting it back after each checkpoint cost 20 % of the claim
    # rate); it is cut back to 64 MB at most
    conn.execute("PRAGMA wal_autocheckpoint=8000")
    conn.execute("PRAGMA journal_size_limit=67108864")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn


class SqliteStore:
    """Base of the daemon's stores: one connection, :meth:`transaction`, :meth:`migrate`."""

    #: store name in ``schema_versions`` and its schema steps, applied in order (subclasses set both)
    NAME = ""
    STEPS: tuple[Step, ...] = ()

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._depth = 0
        self._tx_lock = threading.RLock()  # threads sharing this store take turns with whole transactions
        try:
            self.conn = connect(self.path)
            self.db = sqlite_utils.Database(self.conn)
            self.migrate()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(self.path, exc) from None
            raise

    def check_integrity(self) -> None:
        """Raise :class:`DamagedDatabase` unless SQLite's ``quick_check`` passes (reads every page once:
        the daemon runs it at start, so a damaged file stops it with one line, not a crash later)."""
        try:
            rows = [r[0] for r in self.conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(self.path, exc) from None
            raise
        if rows != ["ok"]:
            raise damaged(self.path, "; ".join(map(str, rows))[:300])

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception).
        Re-entrant: an inner block is part of the outer transaction; another thread using the same
        store waits for the whole transaction."""
        with self._tx_lock:
            with self._transaction() as db:
                yield db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def migrate(self) -> int:
        """Apply this store's schema steps not yet recorded; returns the store's schema version."""
        versions = self.db["schema_versions"]
        with self.transaction():
            versions.create({"store": str, "version": int}, pk="store", if_not_exists=True)
            row = next(self.db.query("SELECT version FROM schema_versions WHERE store = ?", [self.NAME]), None)
            done = row["version"] if row else 0
            for step in self.STEPS[done:]:
                step(self.db)
            if len(self.STEPS) != done:
                versions.upsert({"store": self.NAME, "version": len(self.STEPS)}, pk="store")
        return len(self.STEPS)
