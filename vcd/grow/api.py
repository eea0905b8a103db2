"""The library API the daemon (and notebooks) call: plain functions, picklable arguments, no global state.

- :func:`grow_patch` — one patch in memory (no file written), from an explicit or a random seed;
- :func:`expand_once` — one expansion step on a volpkg: a new linked ``auto_grown_*`` or None;
- :func:`link_overlaps` — ``vc_seg_add_overlap``: link one segment into its collection.

Points are ``(x, y, z)`` level-0 voxels; params are :class:`~vcd.grow.params.GrowParams` or the
params JSON object with VC3D's keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..formats.tifxyz import Surface, area_cm2
from ..formats.volpkg import open_volpkg
from ..formats.volume import Volume, open_volume
from .distance import DistanceField
from .grower import grow_patch as _grow
from .linking import link_new_patch
from .params import GrowParams
from .run import run_grow
from .seeding import random_seed_point


def _params(params) -> GrowParams:
    return params if isinstance(params, GrowParams) else GrowParams.from_dict(dict(params or {}))


def grow_patch(volume: str | os.PathLike | Volume, params, seed=None) -> Surface:
    """Grow one patch from ``seed`` (x, y, z voxels) or, if None, from a random point of predicted
    surface (reproducible with the ``seed`` param). Returns an unsaved :class:`Surface` whose meta has
    ``area_cm2``, ``area_vx2``, ``scale`` and ``vcd_stop_reason``; raises :class:`InputError` when
    nothing could be grown."""
    p = _params(params)
    vol = volume if isinstance(volume, Volume) else open_volume(volume, cache_root=p.cache_root or None)
    field = DistanceField(vol.levels[0], p.threshold, Path(p.cache_root) if p.cache_root else None, p.cache_size)
    rng = np.random.default_rng(p.seed)
    if seed is None:
        seed = random_seed_point(vol.sampler(cache_bytes=min(p.cache_size, 2e8)), rng, None, p.max_tries)
        if seed is None:
            raise InputError(None, f"no predicted surface found in {p.max_tries} random probes",
                             "check the volume (values >= threshold mark the surface) or give a seed")
    r = _grow(field, np.asarray(seed, np.float64), float(p.step_size), int(p.generations), p.accept_dist, rng,
              sheet_gap=p.sheet_gap, bridge_cells=p.bridge_cells)
    if r.n_corners == 0:
        raise InputError(None, f"nothing grown: {r.reason}", "seed on a predicted surface voxel")
    meta = {"area_vx2": r.area_vx2, "area_cm2": area_cm2(r.area_vx2, vol.voxelsize), "scale": [1.0 / p.step_size] * 2,
            "seed": [float(v) for v in seed], "max_gen": r.max_gen, "source": "vcd_grow", "vcd_stop_reason": r.reason}
    return Surface(r.points, meta, channels={"generations": r.generations})


def expand_once(volpkg: str | os.PathLike, params) -> Path | None:
    """One expansion step on ``volpkg`` (its prediction volume, its ``paths/``): grow from a patch with
    fewer than ``tgt_overlap_count`` overlaps and link the result. Returns the new patch directory, or
    None when nothing was written (saturated, too small — the reason is not an error)."""
    vp = open_volpkg(volpkg)
    p = _params({**_params(params).to_dict(), "mode": "expansion"})
    res = run_grow(vp.volume().path, vp.paths_dir, p, warn=lambda m: None)
    if not res.get("written"):
        return None
    source = [res["source_patch"]] if res.get("source_patch") else []  # as the daemon's overlap job does
    link_new_patch(vp.paths_dir, res["written"], also=source)
    return vp.paths_dir / res["written"]


def link_overlaps(paths_dir: str | os.PathLike, segment: str | os.PathLike) -> set[str]:
    """Link ``segment`` (a name in ``paths_dir`` or its path) with every patch it overlaps, both ways,
    under file locks; returns the names it is linked to now."""
    return set(link_new_patch(Path(paths_dir), Path(segment).name))
