"""Job kind ``seed``: grow one patch from a random (or given ``seed_point``) start. Params: GrowParams
keys + ``volume``, ``paths``, optional ``seed_point`` [x, y, z] voxels."""

from __future__ import annotations

from dataclasses import dataclass

from ._grow_common import SeedJobParams, run_grow_job, with_mode
from .spec import JobSpec, Retry

KIND = "seed"


@dataclass(kw_only=True)
class Params(SeedJobParams):
    """``volume``, ``paths``, optional ``seed_point`` and every GrowParams key (mode ``seed``)."""


#: growth is background work (below linking and retraces); no dedup: several seeds may wait at once
SPEC = JobSpec(KIND, Params, priority=2, retry=Retry(max_attempts=3, backoff_s=5.0))


def params_for(raw: dict, volume: str, paths: str, seed_point=None, warn=None) -> Params:
    """Params of a seed job from a params file's dict (``seed.json`` + overrides), the volume and
    ``paths/``; ``warn`` gets the unknown-key warnings."""
    p = SPEC.parse({**raw, "volume": str(volume), "paths": str(paths), "seed_point": seed_point}, warn)
    return with_mode(p, "seed")


def run(params: dict, ctx) -> dict:
    """Grow one patch from ``seed_point`` or a random uncovered point (:func:`vcd.grow.run.run_grow`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``volume``, ``paths``, every ``GrowParams`` key,
        ``seed_point`` ``[x, y, z]`` voxels or None).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    GrowResult
        ``written`` (the new patch's name or None), ``stop`` (:class:`vcd.formats.growresult.GrowStop`
        value), ``reason``, ``area_cm2`` (cm²), …
    """
    return run_grow_job(SPEC.parse(params), ctx, "seed")
