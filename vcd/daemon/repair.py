"""``vcdctl repair``: rebuild the daemon's state when ``.vcd/vcd.sqlite`` is damaged.

The database only *indexes* the volpkg — the real data are the surfaces in ``paths/`` and ``traces/``
— so a damaged file is moved aside (kept for a post-mortem, never deleted) and a fresh one is filled by
the watcher's own reconciliation scan: every patch gets its ``overlap`` job again (linking is
idempotent), every trace's provenance is recorded again (later mask edits retrace it). The
``[pipeline] after_trace`` jobs are not queued again (their outputs exist). The daemon must be stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..formats.volpkg import open_volpkg, state_dir
from .config import load_config
from .lock import refuse_if_running
from .queue import JobQueue, queue_path
from .watcher import Watcher

#: SQLite's side files moved along with the database
SIDE_FILES = ("", "-wal", "-shm", "-journal")


class _Quiet:
    """A logger that keeps nothing (the scan's per-surface lines are summed up by the caller)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def move_aside(db: Path) -> Path | None:
    """Rename ``db`` and its side files to ``<db>.damaged-<YYYYmmdd-HHMMSS>[-wal…]``; returns the new
    path of the database (None when there was none)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    moved = None
    for suffix in SIDE_FILES:
        src = db.with_name(db.name + suffix)
        if src.exists():
            src.rename(target.with_name(target.name + suffix))
            moved = target if moved is None else moved
    return moved


def rebuild_state(volpkg: str | os.PathLike) -> dict:
    """Move a volpkg's database aside and rebuild it from ``paths/`` and ``traces/``. Returns
    ``{"moved_to": path or None, "surfaces": n scanned, "jobs": n queued}``. Refuses (one line) while
    a daemon holds the volpkg."""
    volpkg = Path(volpkg).resolve()
    open_volpkg(volpkg)
    refuse_if_running(volpkg)
    cfg = load_config(volpkg)
    qpath = queue_path(volpkg)
    moved = move_aside(qpath)
    state_dir(volpkg).mkdir(exist_ok=True)
    watcher = Watcher(volpkg, qpath, cfg.replace(pipeline={"after_trace": []}), _Quiet())
    try:
        n = watcher.scan()
    finally:
        watcher.previews.stop()
    q = JobQueue(qpath)
    try:
        queued = q.last_id()
    finally:
        q.close()
    return {"moved_to": moved, "surfaces": n, "jobs": queued}
