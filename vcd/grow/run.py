"""One ``vc_grow_seg_from_seed`` run: choose the start, grow, write ``auto_grown_<ts>``.

:func:`run_grow` is the entry point shared by the ``vcd grow`` command and the ``seed`` / ``expand``
job kinds (linking the new patch is the ``overlap`` job's, :mod:`vcd.grow.linking`);
:func:`grow_surface` grows one patch in memory for notebooks and benchmarks (nothing written).
Points are ``(x, y, z)`` level-0 voxels.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..formats.growresult import GrowResult, GrowStop
from ..formats.naming import unique_name  # noqa: F401 (re-exported: vcd.grow.run.unique_name)
from ..formats.tifxyz import Surface, area_cm2, write_surface
from ..formats.volpkg import is_volpkg, state_dir
from ..formats.volume import Volume, open_volume
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


def _distance_field(vol: Volume, params: GrowParams, cache_root: Path | None) -> DistanceField:
    """The prediction's distance field (``cache_root``: where computed chunks are kept, or None)."""
    return DistanceField(vol.levels[0], params.threshold, cache_root, params.cache_size)


def point_rng(start, seed: int | None = None) -> np.random.Generator:
    """The generator of a patch's random choices: seeded from the start point's exact coordinates
    (x, y, z float64 bytes) and the ``seed`` param (None counts as no seed) — so the same point and
    params give the same patch, bit for bit, however the point was found and in any process."""
    digest = hashlib.sha256(np.asarray(start, np.float64).tobytes() + repr(seed).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _grow_from(field: DistanceField, start, params: GrowParams, progress=None):
    """:func:`~vcd.grow.grower.grow_patch` from ``start`` (x, y, z voxels) with ``params``; its random
    choices come from :func:`point_rng` (the start point and ``params.seed``)."""
    start = np.asarray(start, np.float64)
    return grow_patch(field, start, float(params.step_size), int(params.generations), params.accept_dist,
                      point_rng(start, params.seed), progress, sheet_gap=params.sheet_gap,
                      bridge_cells=params.bridge_cells)


def grow_surface(volume: str | os.PathLike | Volume, params, seed=None) -> Surface:
    """Grow one patch in memory (no file written): for notebooks and benchmarks.

    Parameters
    ----------
    volume : str, os.PathLike or Volume
        The surface-prediction volume (uint8, ``[z, y, x]`` levels).
    params : GrowParams or dict
        Grow params, or their VC3D JSON dict.
    seed : sequence of 3 float, optional
        The start point ``(x, y, z)`` in level-0 voxels; None: a random point of predicted surface
        (reproducible with the ``seed`` param).

    Returns
    -------
    Surface
        Unsaved: ``points`` float32 ``[rows, cols, 3]`` = ``(x, y, z)`` voxels (-1 invalid); its meta
        has ``area_cm2``, ``area_vx2`` (voxels²), ``scale`` (1 / step), ``seed`` and
        ``vcd_stop_reason``; channel ``generations``.

    Raises
    ------
    InputError
        No predicted surface found in ``max_tries`` probes, or nothing grown from the seed.
    """
    p = params if isinstance(params, GrowParams) else GrowParams.from_dict(dict(params or {}))
    cache_root = Path(p.cache_root) if p.cache_root else None
    vol = volume if isinstance(volume, Volume) else open_volume(volume, cache_root=cache_root)
    field = _distance_field(vol, p, cache_root)
    rng = np.random.default_rng(p.seed)
    if seed is None:
        seed = random_seed_point(vol.sampler(cache_bytes=min(p.cache_size, 2e8)), rng, None, p.max_tries, p.threshold)
        if seed is None:
            raise InputError(None, f"no predicted surface found in {p.max_tries} random probes",
                             "check the volume (values >= threshold mark the surface) or give a seed")
    r = _grow_from(field, seed, p)
    if r.n_corners == 0:
        raise InputError(None, f"nothing grown: {r.reason}", "seed on a predicted surface voxel")
    meta = {"area_vx2": r.area_vx2, "area_cm2": area_cm2(r.area_vx2, vol.voxelsize), "scale": [1.0 / p.step_size] * 2,
            "seed": [float(v) for v in seed], "max_gen": r.max_gen, "source": "vcd_grow", "vcd_stop_reason": r.reason}
    return Surface(r.points, meta, channels={"generations": r.generations})


def run_grow(volume: str | os.PathLike, paths: str | os.PathLike, params: GrowParams,
             seed_point=None, progress=None, warn=None, params_raw: dict | None = None) -> GrowResult:
    """Grow one patch, start to finish, and write it unlinked into ``paths`` (the ``overlap`` job links it).

    Parameters
    ----------
    volume : path
        The surface-prediction OME-Zarr (local or remote), level 0 in voxels, arrays ``[z, y, x]``.
    paths : path
        The volpkg's ``paths/`` directory: the collection to expand and where the patch is written.
    params : GrowParams
        VC3D's ``vc_grow_seg_from_seed`` params; ``mode`` ``"seed"`` or ``"expansion"``.
    seed_point : sequence of 3 float, optional
        ``(x, y, z)`` level-0 voxels to grow from; None picks a random uncovered point (seed) or an
        under-covered point of a patch (expansion).
    progress : callable ``(fraction, message)``, optional
    warn : callable ``(message)``, optional
        Gets the warnings (default: printed to stderr).
    params_raw : dict, optional
        The params as written (recorded in the patch's meta), default ``params.to_dict()``.

    Returns
    -------
    GrowResult
        ``written`` (the new patch's name or None), ``stop`` (a :class:`~vcd.formats.growresult.GrowStop`
        value: why it ended, as data), ``reason`` (the same in words), ``area_cm2`` (cm²) and more.

    Raises
    ------
    InputError
        Unusable input: missing volume, seed outside the volume, unwritable ``paths``, nothing
        grown from an explicit seed.
    """
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
    field = _distance_field(vol, params, cache_root)
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
        start = expansion_start(paths, pred, rng, params.tgt_overlap_count, threshold=params.threshold)
        if start is None:
            return {"written": None, "stop": GrowStop.SATURATED.value,
                    "reason": "collection saturated: no patch point is covered by fewer than "
                    f"tgt_overlap_count-1 = {params.tgt_overlap_count - 1} patches (or no patches yet)"}
        p, source_patch, seed_overlap = start
        vc_mode = "expansion"
    else:
        p = random_seed_point(pred, rng, paths, params.max_tries, params.threshold)
        if p is None:
            return {"written": None, "stop": GrowStop.NO_SURFACE.value, "no_surface": True, "top_refusal": "no_surface",
                    "reason": f"no uncovered predicted surface (value >= threshold {params.threshold}) found in "
                              f"{params.max_tries} random probes",
                    "fix": "check that the volume is a surface prediction; for soft predictions lower `threshold`"}
        vc_mode = "random_seed"
    result = _grow_from(field, p, params, progress)
    attempts = 1
    while result.n_corners == 0 and vc_mode != "explicit_seed" and attempts < 20:
        # a start where the seed quad does not fit (a hole, a tight curve): try another one, as VC3D does
        attempts += 1
        start = (expansion_start(paths, pred, rng, params.tgt_overlap_count, threshold=params.threshold) if vc_mode == "expansion"
                 else (random_seed_point(pred, rng, paths, params.max_tries, params.threshold), None, None))
        if start is None or start[0] is None:
            break
        p, sp, so = start
        if vc_mode == "expansion":
            source_patch, seed_overlap = sp, so
        result = _grow_from(field, p, params, progress)
    stats = grow_stats(result)
    if result.n_corners == 0:
        if vc_mode == "explicit_seed":
            raise InputError(None, f"nothing grown: {result.reason}",
                             f"seed on or within a few voxels of a predicted surface voxel (value >= "
                             f"threshold {params.threshold})")
        return {"written": None, "stop": GrowStop.SEED_DOES_NOT_FIT.value, "reason": result.reason,
                "top_refusal": "seed_quad", "stats": stats,
                "fix": "seeds land where the surface is too curved or holed for step_size: lower `step_size`"}
    if result.fused_seed is not None:
        warn(f"seed {[round(float(v), 1) for v in p]} sits on a fused band (two wraps' bands merged into one): "
             f"grown from {[round(float(v), 1) for v in result.seed]} beside it, "
             f"{np.linalg.norm(result.seed - result.fused_seed):.0f} voxels away")
    elif vc_mode == "explicit_seed" and np.linalg.norm(result.seed - p) > 0.5:
        warn(f"seed {[round(float(v), 1) for v in p]} is off the predicted surface: moved "
             f"{np.linalg.norm(result.seed - p):.1f} voxels to {[round(float(v), 1) for v in result.seed]}")
    support = on_prediction_support(field, result.points, params.accept_dist)
    stats["on_prediction_support"] = support
    if params.require_on_prediction_support and support < params.min_on_prediction_support:
        return {"written": None, "stop": GrowStop.OFF_PREDICTION.value, "stats": stats, "refusals": stats["refused"],
                "top_refusal": "support",
                "reason": f"only {100 * support:.0f} % of the patch's vertices lie on the prediction, under "
                          f"min_on_prediction_support={params.min_on_prediction_support}; nothing written",
                "fix": "lower `min_on_prediction_support`, or set `bridge_cells` 0 to grow only on the prediction"}
    voxelsize = vol.voxelsize
    cm2 = area_cm2(result.area_vx2, voxelsize)
    if cm2 < params.min_area_cm:
        return {"written": None, "stop": GrowStop.UNDER_MIN_AREA.value, "area_cm2": cm2, "stats": stats,
                "refusals": stats["refused"],
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
    out = {"written": name, "stop": GrowStop.WROTE.value,
           "area_cm2": cm2, "area_vx2": result.area_vx2, "corners": result.n_corners,
           "mode": vc_mode, "reason": result.reason, "elapsed_s": elapsed,
           "distance_chunks_computed": field.computed, "stats": stats, "refusals": stats["refused"],
           "top_refusal": stats["top_refusal"], "fix": stats["fix"]}
    if vc_mode == "expansion":
        out["source_patch"] = source_patch
    return out
