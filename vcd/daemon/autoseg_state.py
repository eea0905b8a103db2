"""What autoseg keeps in the queue database (kv keys) and how it reads the queue's job rows.

Shared by the tick (:mod:`vcd.daemon.autoseg`), the report (:mod:`vcd.daemon.autoseg_report`) and
``vcd autoseg``; everything else autoseg knows is derived from ``paths/`` and ``traces/``.
"""

from __future__ import annotations

import json

from .queue import JobQueue

KV_STATE = "autoseg_state"  # the last tick's state: phase, done, counts
KV_FORCE = "autoseg_force_trace"  # set by `vcd autoseg` when the growth share of its budget is spent
KV_FUSED = "autoseg_fused"  # fusion key -> fuse job id (each fusion queued once)
KV_CPU = "autoseg_cpu_s"  # CPU seconds of the ticks
KV_RUNS = "autoseg_runs"  # one {"start", "last"} per `vcd autoseg` run
KV_COVERAGE = "autoseg_coverage"  # coverage of the predicted surface over time
KV_GAP_TRIED = "autoseg_gap_tried"  # gap-seed points (x, y, z) already tried
REPORT = "autoseg_report"  # traces/<REPORT>.json / .md / .png
PENDING = ("queued", "running")


def job_rows(q: JobQueue, kinds: tuple[str, ...] | None = None, limit: int = 100000) -> list[dict]:
    """Full rows (params and result parsed) of the queue's jobs of ``kinds`` (all kinds: None)."""
    rows = [r for k in kinds for r in q.list(kind=k, limit=limit)] if kinds else q.list(limit=limit)
    out = []
    for row in rows:
        full = q.get(row["id"])
        if full is None:
            continue
        try:
            full["result"] = json.loads(full["result"]) if full.get("result") else None
        except ValueError:
            full["result"] = None
        out.append(full)
    return out
