"""Self-configuration: the grow and trace params a volpkg needs, measured from its prediction.

``vcd autoseg`` on a volpkg as it arrives (only ``volumes/``) has no ``seed.json``, ``expand.json`` or
``trace_params.json``; VC3D's defaults are sized for whole scrolls (``min_area_cm`` 0.3 is a patch
~690 voxels square at 7.91 µm) and refuse every patch of a small volume. :func:`measure` reads a few
boxes of the prediction and returns what the params depend on; :func:`derive` turns that into params
with the reason for each choice; :func:`autoconf` does both and stores the plan in
``<volpkg>/.vcd/autoconf.json`` (what :func:`vcd.daemon.config.job_params` layers under a person's
params files when autoseg runs).

Measured (all lengths in level-0 voxels):

- **which volume is the prediction** (:meth:`vcd.formats.volpkg.VolPkg.prediction_name`: by name when
  exactly one is named ``*pred*``/``*surface*``, else by content — a prediction is mostly one empty
  value, a CT is dense);
- **value range**: the 99th percentile ``p99`` of the non-empty values in the boxes, and whether the
  prediction is binary (at most two distinct non-empty values) or soft; ``threshold = 2/3 · p99``
  (VC3D's 170 on a 0/255 prediction);
- **sheet thickness and wrap spacing** as distributions: at up to ``n_points`` band voxels, the
  walks of :func:`vcd.kernels.bands.band_walks` along the structure-tensor normal;
- **size**: the volume's shape, voxel size, and the sheet area it holds, ``A ≈ N_band / thickness``
  (``N_band`` the band voxels, counted on a coarse level and scaled by the box ratio).

Derived: ``step_size`` = half the median wrap spacing (≤ VC3D's 20, ≥ 3 grid voxels), ``generations``
so a patch can cross the volume, ``min_area_cm`` = the smaller of a patch 4 steps square and 2 % of
``A``, ``threshold``, ``sheet_gap`` (VC3D-side default 2, halved gaps where bands sit closer), and
the trace's ``src_step`` (= ``step_size``: cells no wider than the wrap spacing).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..formats.jsonio import atomic_write_json, read_json
from ..formats.volpkg import open_volpkg, state_dir

AUTOCONF = "autoconf.json"
SAMPLES = "autoconf_samples.npy"
#: voxels a pyramid level may hold to be read whole for the predicted-surface samples
SAMPLE_LEVEL_VOXELS = 64_000_000
#: level-0 box edge (voxels) read for the band walks, and the number of boxes
BOX = 96
N_BOXES = 24
#: voxels a coarse level may hold to be read whole when locating the sheets
COARSE_VOXELS = 8_000_000


def autoconf_path(volpkg: str | Path) -> Path:
    """``<volpkg>/.vcd/autoconf.json``: the measured plan autoseg runs on."""
    return state_dir(volpkg) / AUTOCONF


def _coarse_level(vol) -> int:
    """The finest pyramid level with at most :data:`COARSE_VOXELS` voxels (the coarsest if none)."""
    for i, lev in enumerate(vol.levels):
        if int(np.prod(lev.shape)) <= COARSE_VOXELS:
            return i
    return len(vol.levels) - 1


def _box_centres(coarse: np.ndarray, scale: int, shape, rng, n: int) -> list[tuple[int, int, int]]:
    """Level-0 centres ``(z, y, x)`` of ``n`` boxes at random non-empty coarse voxels (anywhere in the
    volume, its borders included: the outer wraps of a small volume live there)."""
    nz = np.argwhere(coarse > coarse.min())
    if len(nz) == 0:
        return [tuple(s // 2 for s in shape)]
    pick = nz[rng.choice(len(nz), size=min(n, len(nz)), replace=False)]
    return [tuple(int(min(ci * scale + scale // 2, s - 1)) for ci, s in zip(c, shape)) for c in pick]


def _read_box(vol, centre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The level-0 box of edge :data:`BOX` around ``centre`` (``[z, y, x]``), clipped to the volume;
    returns it, its origin and the bounds ``(lo, hi)`` (box-local) of its core, the central third of
    the unclipped box — from any core voxel a walk of ``BOX / 3`` stays in the box or leaves the volume."""
    shape = np.array(vol.shape)
    c = np.array(centre)
    lo0, hi0 = np.maximum(0, c - BOX // 2), np.minimum(shape, c + BOX // 2)
    box = vol.read_region_u8(lo0[0], hi0[0], lo0[1], hi0[1], lo0[2], hi0[2])
    core_lo = np.maximum(0, c - BOX // 6) - lo0
    core_hi = np.minimum(shape, c + BOX // 6) - lo0
    return box, lo0, np.stack([core_lo, core_hi])


def _value_stats(boxes: list[np.ndarray]) -> dict:
    """Value range of the prediction in ``boxes``: the empty value (the most common), the share of
    empty voxels, ``p99`` of the rest, binary or soft, and ``threshold`` = 2/3 · p99."""
    vals = np.concatenate([b.ravel() for b in boxes])
    counts = np.bincount(vals, minlength=256)
    empty = int(counts.argmax())
    rest = vals[vals != empty]
    if rest.size == 0:
        return {"empty_value": empty, "empty_share": 1.0, "p99": 0.0, "binary": True, "threshold": 0}
    p99 = float(np.percentile(rest, 99))
    distinct = int((counts > 0).sum()) - 1
    return {"empty_value": empty, "empty_share": float(counts[empty] / vals.size), "p99": p99,
            "binary": distinct <= 2, "distinct_values": distinct,
            "threshold": int(max(1, round(2.0 / 3.0 * p99 + (1 / 3.0) * empty)))}


def _dist(a: np.ndarray) -> dict:
    """Percentiles of the finite values of ``a`` (voxels) and their count."""
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"n": 0}
    q = np.percentile(a, [10, 25, 50, 75, 90])
    return {"n": int(a.size), "p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "p75": float(q[3]), "p90": float(q[4])}


def _cores(box: np.ndarray, core: np.ndarray, thr: float) -> np.ndarray:
    """Band voxels ``[z, y, x]`` (box-local) of ``box``'s core ``(lo, hi)``."""
    (z0, y0, x0), (z1, y1, x1) = core
    return np.argwhere(box[z0:z1, y0:y1, x0:x1] >= thr) + core[0]


def _walk_box(box: np.ndarray, idx: np.ndarray, thr: float) -> np.ndarray:
    """Band walks (thickness, spacing +n, spacing -n; voxels) at the band voxels ``idx`` (``[z, y, x]``)
    of ``box``."""
    from ..kernels.bands import band_walks, structure_normals
    if len(idx) == 0:
        return np.empty((0, 3), np.float32)
    nrm = structure_normals(box, idx)
    pts = np.ascontiguousarray(idx[:, ::-1], dtype=np.float64)  # (x, y, z)
    return band_walks(box, pts, nrm, float(thr), float(BOX // 3))


def _walks(boxes: list[np.ndarray], cores_at: list[np.ndarray], thr: float, rng, n_points: int) -> np.ndarray:
    """Walks at ``n_points`` band voxels drawn uniformly from all boxes' cores (so each box weighs by
    the sheet it holds: a sample per unit of sheet area, as the truth is sampled)."""
    cores = [_cores(b, c, thr) for b, c in zip(boxes, cores_at)]
    total = sum(len(c) for c in cores)
    if total == 0:
        return np.empty((0, 3), np.float32)
    share = rng.multinomial(min(n_points, total), [len(c) / total for c in cores])
    out = []
    for b, c, k in zip(boxes, cores, share):
        k = min(int(k), len(c))
        if k:
            out.append(_walk_box(b, c[rng.choice(len(c), size=k, replace=False)], thr))
    return np.concatenate(out) if out else np.empty((0, 3), np.float32)


def measure(vol, n_points: int = 4000, seed: int = 0) -> dict:
    """What the params depend on, read from the prediction ``vol`` (a :class:`~vcd.formats.volume.Volume`):
    ``shape`` (z, y, x voxels), ``voxelsize`` (µm), ``value`` (:func:`_value_stats`), ``thickness`` and
    ``spacing`` (distributions in voxels), ``sheet_area_vx2`` / ``sheet_area_cm2`` and ``seconds``."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in vol.shape)
    lev = _coarse_level(vol)
    coarse = vol.read_region_u8(0, vol.levels[lev].shape[0], 0, vol.levels[lev].shape[1], 0,
                                vol.levels[lev].shape[2], level=lev)
    scale = 2 ** lev
    read = [_read_box(vol, c) for c in _box_centres(coarse, scale, shape, rng, N_BOXES)]
    boxes, origins, cores = [r[0] for r in read], [tuple(r[1]) for r in read], [r[2] for r in read]
    value = _value_stats(boxes)
    thr = value["threshold"]
    walks = _walks(boxes, cores, thr, rng, n_points)
    thick = walks[:, 0] if len(walks) else np.empty(0)
    spacing = _one_sided_spacings(walks)
    nearest = np.fmin(walks[:, 1], walks[:, 2]) if len(walks) else np.empty(0)
    band_vox = _band_voxels(coarse >= thr, boxes, origins, thr, scale)
    t_med = _dist(thick).get("median") or 1.0
    area_vx2 = band_vox / max(t_med, 1.0)
    vx_cm = vol.voxelsize * 1e-4
    return {"shape": shape, "voxelsize": vol.voxelsize, "coarse_level": lev, "boxes": len(boxes),
            "value": value, "thickness": _dist(thick), "spacing": _dist(spacing),
            "nearest_spacing": _dist(nearest), "band_voxels": float(band_vox),
            "sheet_area_vx2": float(area_vx2), "sheet_area_cm2": float(area_vx2 * vx_cm ** 2),
            "seconds": time.perf_counter() - t0}


#: a spacing this many times the other side's is taken for a missing band (dropout) and left out
MISSING_BAND = float("inf")


def _one_sided_spacings(walks: np.ndarray) -> np.ndarray:
    """Both sides' spacings (voxels) of every walk, except a side more than :data:`MISSING_BAND` times
    the other: the next band there is missing (dropout, a hole) and the walk reached the one beyond."""
    if not len(walks):
        return np.empty(0)
    a, b = walks[:, 1], walks[:, 2]
    keep_a = ~(a > MISSING_BAND * b)   # NaN comparisons are False: a side alone is kept
    keep_b = ~(b > MISSING_BAND * a)
    return np.concatenate([a[keep_a], b[keep_b]])


def _band_voxels(coarse_on: np.ndarray, boxes, origins, thr: float, scale: int) -> float:
    """Level-0 band voxels in the whole volume: the coarse level's band voxels (a coarse voxel of a
    max pyramid is on when any of its ``scale³`` voxels is) times the level-0 band voxels per coarse
    band voxel measured in ``boxes``."""
    on0 = sum(int((b >= thr).sum()) for b in boxes)
    onc = 0
    for b, (z, y, x) in zip(boxes, origins):
        cz, cy, cx = z // scale, y // scale, x // scale
        ez, ey, ex = (-(-s // scale) for s in b.shape)
        onc += int(coarse_on[cz:cz + ez, cy:cy + ey, cx:cx + ex].sum())
    ratio = on0 / onc if onc else float(scale ** 3)
    return float(coarse_on.sum()) * ratio


def derive(m: dict) -> dict:
    """Params per job kind from a :func:`measure` result, and why: ``{"seed": {...}, "expand": {...},
    "trace": {...}, "why": {key: sentence}}`` (VC3D's keys; lengths in voxels, areas in cm²)."""
    sp = m["spacing"].get("median") or m["nearest_spacing"].get("median")
    th = m["thickness"].get("median") or 1.0
    why = {}
    if not sp:  # no second band in reach: a single sheet or a sparse prediction
        sp = 40.0
        why["spacing"] = "no wrap spacing measured (no second band within reach): assumed 40 voxels"
    step = int(min(20, max(3, round(0.5 * sp))))
    why["step_size"] = f"half the median wrap spacing {sp:.1f} vx (clipped to 3..20)"
    gens = int(min(200, max(10, math.ceil(max(m["shape"]) / step))))
    why["generations"] = f"a patch can reach across the volume's longest side ({max(m['shape'])} vx) at step {step}"
    vx_cm = m["voxelsize"] * 1e-4
    area_vx2 = min((4 * step) ** 2, 0.02 * m["sheet_area_vx2"]) if m["sheet_area_vx2"] > 0 else (4 * step) ** 2
    min_area = float(f"{max(area_vx2, 4 * step * step) * vx_cm ** 2:.2g}")
    why["min_area_cm"] = (f"a patch 4 steps square ({(4 * step) ** 2} vx²) or 2 % of the sheet area the volume "
                          f"holds (~{m['sheet_area_cm2']:.3g} cm²), the smaller")
    thr = int(m["value"]["threshold"])
    why["threshold"] = (f"2/3 of the prediction's p99 value {m['value']['p99']:.0f} "
                        f"({'binary' if m['value']['binary'] else 'soft'} prediction)")
    near = m["nearest_spacing"].get("p10")
    gap = 2.0
    if near and near - th < 2 * gap:
        gap = float(f"{max(0.5, 0.5 * (near - th)):.2g}")
        why["sheet_gap"] = f"half the background between close bands (p10 spacing {near:.1f} − thickness {th:.1f} vx)"
    grow = {"generations": gens, "step_size": step, "min_area_cm": min_area, "threshold": thr, "sheet_gap": gap,
            "tgt_overlap_count": 20}
    why["tgt_overlap_count"] = "VC3D's default, 20 links per patch"
    trace = {"src_step": step, "step": 1}
    why["src_step"] = f"the patches' step ({step} vx): trace cells no wider than the wrap spacing {sp:.1f} vx"
    return {"seed": {"mode": "seed", **grow}, "expand": {"mode": "expansion", **grow}, "trace": trace, "why": why}


def autoconf(volpkg: str | Path, volume_name: str | None = None, write: bool = True) -> dict:
    """Measure the volpkg's prediction and derive params (:func:`measure`, :func:`derive`); the plan
    ``{"volume", "chosen_by", "measured", "derived", "why", "adapted"}`` is stored in
    :func:`autoconf_path` when ``write`` (an earlier plan for the same volume is reused as it is, so a
    resumed run keeps its params and what it adapted)."""
    vp = open_volpkg(volpkg)
    name, how = (volume_name, "config") if volume_name else vp.prediction_name()
    old = load_autoconf(volpkg)
    if old and old.get("volume") == name:
        return old
    m = measure(vp.volume(name))
    d = derive(m)
    plan = {"volume": name, "chosen_by": how, "measured": m, "why": d.pop("why"), "derived": d, "adapted": {},
            "created": time.time()}
    if write:
        state_dir(volpkg).mkdir(exist_ok=True)
        samples, err = surface_samples(vp.volume(name), d["seed"]["threshold"])
        plan["samples"] = {"file": SAMPLES, "n": int(len(samples)), "error_vx": err}
        _save_samples(volpkg, samples)
        atomic_write_json(autoconf_path(volpkg), plan)
    return plan


def surface_samples(vol, threshold: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, float]:
    """``n`` points ``(x, y, z)`` (level-0 voxels) drawn uniformly from the predicted surface (values >=
    ``threshold``) over the whole volume, read from the finest level holding at most
    :data:`SAMPLE_LEVEL_VOXELS` voxels; and their error bound (voxels: half a coarse voxel's diagonal,
    0 at level 0). What "coverage of the predicted surface" is measured on."""
    lev = next((i for i, lv in enumerate(vol.levels) if int(np.prod(lv.shape)) <= SAMPLE_LEVEL_VOXELS),
               len(vol.levels) - 1)
    shp = vol.levels[lev].shape
    data = vol.read_region_u8(0, shp[0], 0, shp[1], 0, shp[2], level=lev)
    idx = np.argwhere(data >= threshold)
    if len(idx) == 0:
        return np.empty((0, 3)), 0.0
    idx = idx[np.random.default_rng(seed).choice(len(idx), size=min(n, len(idx)), replace=False)]
    scale = 2 ** lev
    pts = (idx[:, ::-1] * scale + (scale - 1) / 2.0).astype(np.float64)
    return pts, 0.87 * (scale - 1)


def load_samples(volpkg: str | Path) -> np.ndarray | None:
    """The predicted-surface samples stored beside the plan (N×3 ``(x, y, z)``), or None."""
    p = state_dir(volpkg) / SAMPLES
    try:
        return np.load(p) if p.exists() else None
    except (OSError, ValueError):
        return None


def _save_samples(volpkg: str | Path, pts: np.ndarray) -> None:
    p = state_dir(volpkg) / SAMPLES
    tmp = p.with_name(f".{p.name}.tmp.npy")
    np.save(tmp, pts)
    tmp.replace(p)


def load_autoconf(volpkg: str | Path) -> dict | None:
    """The stored plan, or None (none yet, or unreadable: it is then measured again)."""
    p = autoconf_path(volpkg)
    if not p.exists():
        return None
    try:
        d = read_json(p, "autoconf plan")
    except Exception:  # noqa: BLE001 — a damaged plan is re-measured, never fatal
        return None
    return d if isinstance(d, dict) and "derived" in d else None


def plan_lines(plan: dict) -> list[str]:
    """The plan as lines for ``vcd autoseg --dry-run`` and the report: each choice with its measurement."""
    m = plan["measured"]
    v, s, t = m["value"], m["spacing"], m["thickness"]
    lines = [f"prediction volume: {plan['volume']} (chosen by {plan['chosen_by']})",
             f"volume: {m['shape'][0]}x{m['shape'][1]}x{m['shape'][2]} (z, y, x) voxels at {m['voxelsize']:g} µm; "
             f"~{m['sheet_area_cm2']:.3g} cm² of sheet",
             f"values: {'binary' if v['binary'] else 'soft'}, empty {v['empty_value']} in {v['empty_share']:.0%} "
             f"of the sampled voxels, p99 {v['p99']:.0f}",
             "wrap spacing (vx): " + _fmt_dist(s), "sheet thickness (vx): " + _fmt_dist(t),
             f"measured in {m['seconds']:.1f} s from {m['boxes']} boxes"]
    for kind in ("seed", "expand", "trace"):
        keys = ", ".join(f"{k} {val}" for k, val in plan["derived"][kind].items() if k != "mode")
        lines.append(f"{kind} params: {keys}")
    lines += [f"  {k}: {why}" for k, why in plan["why"].items()]
    for kind, over in (plan.get("adapted") or {}).items():
        for k, val in over.items():
            lines.append(f"adapted {kind} {k} -> {val}")
    return lines


def _fmt_dist(d: dict) -> str:
    if not d.get("n"):
        return "not measured"
    return f"median {d['median']:.1f} (p10 {d['p10']:.1f}, p90 {d['p90']:.1f}; n {d['n']})"
