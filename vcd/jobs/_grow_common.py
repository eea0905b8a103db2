"""Shared params and body of the ``seed`` and ``expand`` job kinds (``vc_grow_seg_from_seed``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..grow.params import GrowParams
from .spec import JobSpec, embedded, param, path_field


@dataclass(kw_only=True)
class GrowJobParams:
    """Where to grow (``volume``, ``paths``) plus every ``GrowParams`` key, flattened in the job JSON."""

    volume: str = path_field(help="prediction volume (OME-Zarr directory)")
    paths: str = path_field(help="patch directory (the volpkg's paths/)")
    grow: GrowParams = embedded(GrowParams, paths=("cache_root",), help="vc_grow_seg_from_seed params")


@dataclass(kw_only=True)
class SeedJobParams(GrowJobParams):
    """Growth params that may name the start point."""

    seed_point: list | None = param(None, help="[x, y, z] voxels to grow from; none = a random uncovered point")


#: parses the JSON of any growth job (``vcd grow`` hands its params file with volume/paths/seed_point)
_ANY_GROWTH = JobSpec("seed", SeedJobParams)


def with_mode(p, mode: str):
    """``p`` with its GrowParams' ``mode`` set (seed jobs grow from a seed, expand jobs expand)."""
    return dataclasses.replace(p, grow=dataclasses.replace(p.grow, mode=mode))


def run_grow_job(p, ctx, mode: str) -> dict:
    """Grow one patch (:func:`vcd.grow.run.run_grow`); ``p``: a seed or expand ``Params`` (or the
    JSON dict of one, as ``vcd grow`` passes it)."""
    from ..grow.run import run_grow  # imported here: submitting a job must not load the grower
    if isinstance(p, dict):
        p = _ANY_GROWTH.parse(p)
    p = with_mode(p, mode)
    return run_grow(p.volume, p.paths, p.grow, seed_point=getattr(p, "seed_point", None), progress=ctx.progress,
                    warn=ctx.warn, params_raw=p.grow.to_dict())
