"""The growth decisions: pure functions of what the scheduler looked at (no queue, no disk).

Used by :class:`vcd.daemon.scheduler.Scheduler` (what to queue now), by autoseg's stop rule
(:func:`vcd.daemon.autoseg_plan.growth_finished`) and by ``vcd demo``; tested in-process in
``tests/daemon/test_decisions.py``. Their own module so that the scheduler, autoseg and the demo
share them without importing each other.
"""

from __future__ import annotations

from . import backoff as bo
from .config import ScheduleTable


def saturated(recent_expand_results: list[dict | None], expand_running: int) -> bool:
    """Expansion is saturated when the last 4 expand jobs all found no under-covered place to grow
    (done without writing) and none is running."""
    return (len(recent_expand_results) == 4 and not expand_running
            and all(r is not None and "written" in r and r["written"] is None for r in recent_expand_results))


def failure_storm(recent_states: dict[str, int]) -> bool:
    """Growth jobs finished in the last minute, per state → True while they only fail (at least 3):
    e.g. bad params must not flood the queue."""
    return recent_states.get("failed", 0) >= 3 and not recent_states.get("done", 0)


def plan_growth(schedule: ScheduleTable, counts: dict[tuple[str, str], int], stats: dict, recent_expand: list,
                backoff: dict, now: float) -> list[str]:
    """The growth jobs to queue now (kinds, in order), from the ``[schedule]`` config, the queue's
    ``counts()`` (kind, state) → n, :func:`vcd.post.coverage.collection_stats`, the results of the newest 4 expand
    jobs (newest first) and the back-off state (:func:`vcd.daemon.backoff.backoff_state`) at ``now``."""
    def active(kind):
        return counts.get((kind, "queued"), 0) + counts.get((kind, "running"), 0)

    def allowed(wanted):
        return bo.allowed_new_jobs(backoff, wanted, active("seed") + active("expand"), now)
    if stats["patches"] == 0:
        return ["seed"] * allowed(schedule.seed_count - active("seed"))
    if stats["density"] >= schedule.target_density or stats["patches"] >= schedule.max_patches:
        return []
    if saturated(recent_expand, counts.get(("expand", "running"), 0)):
        return []  # the last expansions found no under-covered place
    return ["expand"] * allowed(schedule.expand_queue - counts.get(("expand", "queued"), 0))
