"""A full disk: noticed, said once, waited out with back-off, and recovered from without a restart.

:class:`DiskGuard` is the daemon's one view of it. Each supervise tick (:meth:`DiskGuard.tick`) looks at
the free space of the disks holding ``.vcd/`` (the queue) and ``paths/``; an SQLite or OS "disk full"
error anywhere in the daemon (:func:`is_disk_full`) is reported with :meth:`DiskGuard.hit`. While the
disk is full the daemon queues no growth, its periodic jobs and the watcher wait, workers retry their
claims with back-off (:func:`wait_out`), and the guard probes again after 1, 2, 4 … 30 s; when space is
back it logs once and the daemon rescans ``paths/`` for what arrived meanwhile. ``vcdctl status``
reports the same check (:func:`full_disks`), ``/metrics`` has ``vcd_disk_full``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

#: below this many free bytes a disk counts as full (SQLite and surface writes need a few pages)
MIN_FREE_BYTES = 1 << 20
#: free space needed before the daemon resumes (hysteresis: no flapping at the edge)
RESUME_FREE_BYTES = 2 << 20
MAX_BACKOFF_S = 30.0


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's ``database or disk is full`` and the OS's ENOSPC / EDQUOT."""
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s disk (None when it cannot be read)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def full_disks(paths: Iterable[str | os.PathLike], limit: int = MIN_FREE_BYTES) -> list[tuple[Path, int]]:
    """``(path, free bytes)`` of each of ``paths`` whose disk has less than ``limit`` free (one per disk)."""
    seen, out = set(), []
    for p in map(Path, paths):
        try:
            dev = os.stat(p).st_dev
        except OSError:
            continue
        free = free_bytes(p)
        if dev not in seen and free is not None and free < limit:
            out.append((p, free))
        seen.add(dev)
    return out


def wait_out(fn: Callable, stop: Callable[[], bool] = lambda: False, on_full: Callable | None = None):
    """``fn()``, retried with back-off (0.5 s doubling to 30 s) while it fails because the disk is full,
    until ``stop()``; other errors are raised. Returns ``fn()``'s value, or None when stopped."""
    wait = 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            if on_full is not None:
                on_full(exc)
        if stop():
            return None
        time.sleep(wait)
        wait = min(MAX_BACKOFF_S, wait * 2)


class DiskGuard:
    """The daemon's disk-full state: ``full`` (read by the scheduler and the watcher), logged once per
    episode (``disk_full`` … ``disk_space_ok``), ``vcd_disk_full`` on ``/metrics``."""

    def __init__(self, paths: Iterable[str | os.PathLike], log, on_resume: Callable[[], None] | None = None):
        self.paths = [Path(p) for p in paths]
        self.log = log
        self.on_resume = on_resume
        self.full = False
        self._lock = threading.Lock()
        self._next_probe = 0.0
        self._backoff = 1.0

    def hit(self, exc: BaseException | None = None, where: Path | None = None, free: int | None = None) -> None:
        """A write failed for lack of space (or the free space fell below :data:`MIN_FREE_BYTES`)."""
        with self._lock:
            self._next_probe = time.monotonic() + self._backoff
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
            if self.full:
                return
            self.full = True
        where = where or self.paths[0]
        free = free_bytes(where) if free is None else free
        self.log.error("disk_full", path=str(where), free_bytes=free, error=str(exc) if exc else "no free space",
                       hint=f"free space on the disk holding {where}; the daemon pauses growth and its own writes, "
                            "retries with back-off and resumes by itself")

    def tick(self) -> None:
        """Once per supervise tick: notice a full disk before a write fails; while full, probe on the
        back-off schedule and resume when space is back."""
        if not self.full:
            low = full_disks(self.paths)
            if low:
                self.hit(where=low[0][0], free=low[0][1])
            return
        if time.monotonic() < self._next_probe:
            return
        if full_disks(self.paths, RESUME_FREE_BYTES):
            self.hit()  # still full: wait longer
            return
        with self._lock:
            self.full, self._backoff = False, 1.0
        self.log.info("disk_space_ok", paths=[str(p) for p in self.paths],
                      free_bytes=[free_bytes(p) for p in self.paths])
        if self.on_resume is not None:
            self.on_resume()

    def guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` skipped while the disk is full, and a disk-full error in it reported instead of raised
        (the scheduler's periodic jobs)."""
        def run():
            if self.full:
                return
            try:
                fn()
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                self.hit(exc)
        run.__name__ = getattr(fn, "__name__", "job")
        return run
