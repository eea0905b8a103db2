"""Job kind ``expand``: grow one patch from an under-covered point of an existing patch, written with
that patch's name in its meta (``vcd_source_patch``) for the ``overlap`` job, the one linker, to link
both. Params: GrowParams keys + ``volume``, ``paths``."""

from __future__ import annotations

from dataclasses import dataclass

from ._grow_common import GrowJobParams, run_grow_job, with_mode
from .spec import JobSpec, Retry

KIND = "expand"


@dataclass(kw_only=True)
class Params(GrowJobParams):
    """Expansion picks its own start point; nothing beyond the shared growth params."""


#: the lowest growth priority: expansion fills in once seeds, links and retraces are done
SPEC = JobSpec(KIND, Params, priority=1, retry=Retry(max_attempts=3, backoff_s=5.0))


def params_for(raw: dict, volume: str, paths: str, warn=None) -> Params:
    """Params of an expand job from a params file's dict (``expand.json`` + overrides), the volume and
    ``paths/``; ``warn`` gets the unknown-key warnings."""
    return with_mode(SPEC.parse({**raw, "volume": str(volume), "paths": str(paths)}, warn), "expansion")


def run(params: dict, ctx) -> dict:
    """Grow one patch from an under-covered point of an existing patch (:func:`vcd.grow.run.run_grow`,
    mode ``expansion``).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``volume``, ``paths``, every ``GrowParams`` key).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    GrowResult
        As the ``seed`` job's; ``stop`` is ``"saturated"`` when no patch point is under-covered.
    """
    return run_grow_job(SPEC.parse(params), ctx, "expansion")
