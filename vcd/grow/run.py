"""One ``vc_grow_seg_from_seed`` run: choose the start, grow, write ``auto_grown_<ts>``, link.

Library entry point shared by the ``vcd grow`` command and the ``seed`` / ``expand`` job kinds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..formats.naming import unique_name  # noqa: F401 (re-exported: vcd.grow.run.unique_name)
from ..formats.tifxyz import area_cm2, write_surface
from ..formats.volpkg import is_volpkg, state_dir
from ..formats.volume import open_volume
from ..kernels.field import dist_many
from ..kernels.points import valid_mask
from .distance import DistanceField
from .grower import grow_patch, grow_stats
from .params import GrowParams
from .seeding import expansion_start, random_seed_point


def default_cache_root(paths_dir: Path) -> Path:
    """``<volpkg>/.vcd/cache`` when ``paths_dir`` is in a volpkg, else ``<paths>/../.vcd-cache``."""
    vp = paths_dir.parent
    return state_dir(vp) / "cache" if is_volpkg(vp) else vp / ".vcd-cache"


def on_prediction_support(field: DistanceField, points: np.ndarray, accept: float) -> float:
    """Share (0-1) of a grid's valid vertices (``points[row, col] = (x, y, z)``, -1 invalid) within
    ``accept`` voxels of the predicted surface — VC3D's ``min_on_prediction_support`` measure."""
    pts = points[valid_mask(points)].astype(np.float64)
    if len(pts) == 0:
        return 0.0
    field.ensure_around(pts, 2)
    return round(float(np.mean(dist_many(field.pool, field.slots, field.shape, pts) <= accept)), 4)


def run_grow(volume: str | os.PathLike, paths: str | os.PathLike, params: GrowParams,
             seed_point=None, progress=None, warn=None, params_raw: dict | None = None) -> dict:
    """Grow one patch. Returns ``{"written": name or None, "reason": str, "area_cm2": float, ...}``.

    Raises :class:`InputError` for unusable input (missing volume, seed outside the volume,
    unwritable PATHS)."""
    t0 = time.perf_counter()
    warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
    paths = Path(paths)
    cache_root = Path(params.cache_root) if params.cache_root else default_cache_root(paths)
    vol = open_volume(volume, cache_root=cache_root)  # a remote volume's chunks are kept under cache_root
    if not paths.is_dir():
        raise InputError(paths, "PATHS directory does not exist", "create it or pass the volpkg's paths/ directory")
    try:  # a real write probe (root ignores permission bits; read-only mounts do not)
        fd, probe = tempfile.mkstemp(prefix=".vcd-write-probe-", dir=paths)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(paths, f"PATHS directory is not writable ({exc.strerror})",
                         "fix its permissions or choose another directory") from None
    level0 = vol.levels[0]
    field = DistanceField(level0, params.threshold, cache_root, params.cache_size)
    rng = np.random.default_rng(params.seed)
    pred = vol.sampler(cache_bytes=min(params.cache_size, 2e8))
    mode = params.mode
    source_patch, seed_overlap = None, None
    if seed_point is not None:
        p = np.asarray(seed_point, dtype=np.float64)
        z, y, x = vol.shape
        if not (0 <= p[0] < x and 0 <= p[1] < y and 0 <= p[2] < z):
            raise InputError(None, f"seed {[round(float(v), 1) for v in p]} is outside the volume (x < {x}, y < {y}, z < {z})",
                             "give X Y Z in level-0 voxels inside the volume")
        vc_mode = "explicit_seed"
    elif mode == "expansion":
        start = expansion_start(paths, pred, rng, params.tgt_overlap_count)
        if start is None:
            return {"written": None, "reason": "collection saturated: no patch point is covered by fewer than "
                    f"tgt_overlap_count-1 = {params.tgt_overlap_count - 1} patches (or no patches yet)"}
        p, source_patch, seed_overlap = start
        vc_mode = "expansion"
    else:
        p = random_seed_point(pred, rng, paths, params.max_tries, params.threshold)
        if p is None:
            return {"written": None, "no_surface": True, "top_refusal": "no_surface",
                    "reason": f"no uncovered predicted surface (value >= threshold {params.threshold}) found in "
                              f"{params.max_tries} random probes",
                    "fix": "check that the volume is a surface prediction; for soft predictions lower `threshold`"}
        vc_mode = "random_seed"
    result = grow_patch(field, p, float(params.step_size), int(params.generations), params.accept_dist, rng,
                        progress, sheet_gap=params.sheet_gap, bridge_cells=params.bridge_cells)
    attempts = 1
    while result.n_corners == 0 and vc_mode != "explicit_seed" and attempts < 20:
        # a start where the seed quad does not fit (a hole, a tight curve): try another one, as VC3D does
        attempts += 1
        start = (expansion_start(paths, pred, rng, params.tgt_overlap_count) if vc_mode == "expansion"
                 else (random_seed_point(pred, rng, paths, params.max_tries, params.threshold), None, None))
        if start is None or start[0] is None:
            break
        p, sp, so = start
        if vc_mode == "expansion":
            source_patch, seed_overlap = sp, so
        result = grow_patch(field, p, float(params.step_size), int(params.generations), params.accept_dist, rng,
                            progress, sheet_gap=params.sheet_gap, bridge_cells=params.bridge_cells)
    stats = grow_stats(result)
    if result.n_corners == 0:
        if vc_mode == "explicit_seed":
            raise InputError(None, f"nothing grown: {result.reason}",
                             f"seed on or within a few voxels of a predicted surface voxel (value >= "
                             f"threshold {params.threshold})")
        return {"written": None, "reason": result.reason, "top_refusal": "seed_quad", "stats": stats,
                "fix": "seeds land where the surface is too curved or holed for step_size: lower `step_size`"}
    if vc_mode == "explicit_seed" and np.linalg.norm(result.seed - p) > 0.5:
        warn(f"seed {[round(float(v), 1) for v in p]} is off the predicted surface: moved "
             f"{np.linalg.norm(result.seed - p):.1f} voxels to {[round(float(v), 1) for v in result.seed]}")
    support = on_prediction_support(field, result.points, params.accept_dist)
    stats["on_prediction_support"] = support
    if params.require_on_prediction_support and support < params.min_on_prediction_support:
        return {"written": None, "stats": stats, "refusals": stats["refused"], "top_refusal": "support",
                "reason": f"only {100 * support:.0f} % of the patch's vertices lie on the prediction, under "
                          f"min_on_prediction_support={params.min_on_prediction_support}; nothing written",
                "fix": "lower `min_on_prediction_support`, or set `bridge_cells` 0 to grow only on the prediction"}
    voxelsize = vol.voxelsize
    cm2 = area_cm2(result.area_vx2, voxelsize)
    if cm2 < params.min_area_cm:
        return {"written": None, "area_cm2": cm2, "stats": stats, "refusals": stats["refused"],
                "top_refusal": stats["top_refusal"] or "min_area",
                "reason": f"patch of {cm2:.4f} cm² is under min_area_cm={params.min_area_cm} ({result.reason}); "
                          "nothing written — lower min_area_cm to keep small patches",
                "fix": f"lower `min_area_cm` (below {cm2:.4f}) or {stats['fix'] or 'seed elsewhere'}"}
    name = unique_name(paths, "auto_grown_")
    elapsed = time.perf_counter() - t0
    meta = {
        "area_vx2": result.area_vx2, "area_cm2": cm2, "max_gen": result.max_gen,
        "seed": [float(v) for v in p], "elapsed_time_s": elapsed, "source": "vcd_grow",
        "vc_gsfs_params": params_raw if params_raw is not None else params.to_dict(),
        "vc_gsfs_mode": vc_mode, "vc_gsfs_version": f"vcd-{__version__}", "scale": [1.0 / params.step_size] * 2,
        "vcd_stop_reason": result.reason, "vcd_grow_stats": stats, "on_prediction_support": support,
    }
    if seed_overlap is not None:
        meta["seed_overlap"] = int(seed_overlap)
    if vc_mode == "expansion" and source_patch:
        meta["vcd_source_patch"] = source_patch  # linked to it by the overlap job, the one linker
    write_surface(paths / name, result.points, meta, channels={"generations": result.generations})
    out = {"written": name, "area_cm2": cm2, "area_vx2": result.area_vx2, "corners": result.n_corners,
           "mode": vc_mode, "reason": result.reason, "elapsed_s": elapsed,
           "distance_chunks_computed": field.computed, "stats": stats, "refusals": stats["refused"],
           "top_refusal": stats["top_refusal"], "fix": stats["fix"]}
    if vc_mode == "expansion":
        out["source_patch"] = source_patch
    return out
