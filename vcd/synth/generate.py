"""Make a synthetic scroll volpkg with known ground truth (the test bed and the demo's data).

``make_scroll`` writes ``config.json``, ``volumes/synth_pred.zarr`` (thin binary surface prediction,
uint8 0/255), optionally ``volumes/synth_ct.zarr`` (CT-like intensities), an empty ``paths/`` and
``synth_truth.json``. Presets:

- ``easy``: wraps 20 voxels apart, gentle waviness, no defects;
- ``medium``: 14 voxels apart, waviness that brings wraps to ~9 voxels, holes in the prediction,
  two places where a wrap bulges to ~4 voxels of its neighbour, 1% dropout;
- ``hard``: 11 voxels apart, places where wraps touch (~1.5 voxel gap), false bridges (predicted
  ramps joining wrap w to w+1), holes, speckle noise and 3% dropout;
- ``realistic``: every knob drawn from the seed (see :mod:`vcd.synth.realistic`): band thickness 1-6
  voxels varying along the sheet, soft or binary, 0-40% dropout in blobs plus large holes, crushed and
  displaced cross-section (wrap spacing ~4-25 voxels), axis tilt 5-15 degrees and twist, fused wraps,
  false fragments, speckle. ``realistic_family(seed)`` returns the drawn knobs.

Keyword overrides (``make_scroll(..., **overrides)``): any realistic knob for ``realistic``; for the
classic presets ``half_thickness`` (voxels; default 1.0: a 2-voxel band), ``clean`` (no defects) and
the preset's own keys (``pitch``, ``n_holes``, ``dropout``, ...). Example: a clean spiral with 3-voxel
sheets is ``make_scroll(out, (96, 128, 128), "easy", half_thickness=1.5)``; a realistic scroll is
``make_scroll(out, (80, 128, 128), "realistic", seed=3)`` and its 5-voxel, 30%-dropout variant
``make_scroll(out, (80, 128, 128), "realistic", seed=3, half_thickness=2.5, dropout=0.3)``.

``grow_params_for(truth)`` gives ``seed.json``/``expand.json`` values that suit a scroll (``vcd synth``
writes them at the volpkg root, where the daemon reads them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..formats.volpkg import create_volpkg
from ..formats.volume import write_ome_zarr
from . import model as m
from .realistic import KNOBS, build_realistic, realistic_family, render_realistic
from .truth import SheetTruth

PRESETS = {
    "easy": dict(pitch=20.0, waves=[(1.5, 3.0, 1.0)], n_bumps=0, bump_gap=0, n_holes=0, n_bridges=0,
                 dropout=0.0, speckle=0.0),
    "medium": dict(pitch=14.0, waves=[(2.0, 3.0, 1.0), (1.3, 2.5, 0.5)], n_bumps=2, bump_gap=4.0, n_holes=3,
                   n_bridges=0, dropout=0.01, speckle=0.0),
    "hard": dict(pitch=11.0, waves=[(2.0, 3.0, 1.0), (1.2, 2.5, 1.5)], n_bumps=4, bump_gap=1.5, n_holes=5,
                 n_bridges=4, dropout=0.03, speckle=2e-4),
}
PRESET_NAMES = (*PRESETS, "realistic")
_CLEAN = dict(n_bumps=0, n_holes=0, n_bridges=0, dropout=0.0, speckle=0.0)

__all__ = ["PRESETS", "PRESET_NAMES", "KNOBS", "build_truth", "make_scroll", "realistic_family", "render_volumes",
           "grow_params_for", "write_grow_params"]


def _classic_cfg(preset: str, overrides: dict) -> tuple[dict, float]:
    """The classic preset's config with ``overrides`` applied, and the band half thickness."""
    over = dict(overrides)
    ht = float(over.pop("half_thickness", None) or 1.0)
    clean = bool(over.pop("clean", False))
    bad = sorted(set(over) - set(PRESETS[preset]))
    if bad:
        raise ValueError(f"unknown override(s) {bad} for preset {preset!r}; use half_thickness, clean or "
                         f"{sorted(PRESETS[preset])}")
    cfg = {**PRESETS[preset], **(_CLEAN if clean else {}), **over}
    return cfg, ht


def build_truth(shape, preset: str = "medium", seed: int = 0, voxelsize: float = 7.91, **overrides) -> SheetTruth:
    """Choose the sheet and its planted features for a volume of ``shape`` = (z, y, x) voxels.

    ``overrides``: see the module docstring (realistic knobs, or half_thickness / clean / preset keys)."""
    if preset == "realistic":
        return build_realistic(shape, seed, voxelsize, **overrides)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(PRESET_NAMES)}")
    cfg, ht = _classic_cfg(preset, overrides)
    rng = np.random.default_rng(seed)
    Z, Y, X = (int(s) for s in shape)
    drift = (0.04, -0.03)
    wave_amp = sum(w[0] for w in cfg["waves"])
    r_max = min(X, Y) / 2.0 - 5.0 - max(abs(drift[0]), abs(drift[1])) * Z / 2.0 - wave_amp
    r0 = max(8.0, 0.06 * min(X, Y))
    pitch = cfg["pitch"]
    theta0 = 2 * math.pi * 0.25
    theta1 = theta0 + 2 * math.pi * max(0.5, (r_max - r0) / pitch)
    waves = [(a, k, q, float(rng.uniform(0, 2 * math.pi))) for a, k, q in cfg["waves"]]
    center = (X / 2.0 + float(rng.uniform(-2, 2)), Y / 2.0 + float(rng.uniform(-2, 2)))
    truth = SheetTruth(shape=(Z, Y, X), center=center, drift=drift, r0=r0, pitch=pitch, theta0=theta0,
                       theta1=theta1, waves=waves, preset=preset, seed=seed, voxelsize=voxelsize, half_thickness=ht)
    if overrides:
        truth.overrides = dict(overrides)

    def place(n):
        out = []
        lo, hi = theta0 + 0.5 * math.pi, theta1 - 2.2 * math.pi  # features need the next wrap outward
        if hi <= lo:
            return out
        for _ in range(n):
            for _try in range(50):
                th = float(rng.uniform(lo, hi))
                z = float(rng.uniform(0.2 * Z, 0.8 * Z))
                p = truth.point(th, z)
                if 10 <= p[0] <= X - 10 and 10 <= p[1] <= Y - 10:
                    out.append((th, z))
                    break
        return out

    # touches: bulge wrap w towards w+1 so the gap shrinks to bump_gap voxels
    bumps = []
    for th, z in place(cfg["n_bumps"]):
        gaps = [truth.radius(th + 2 * math.pi + dt, z + dz) - truth.radius(th + dt, z + dz)
                for dt in np.linspace(-0.3, 0.3, 7) for dz in np.linspace(-10, 10, 5)]
        amp = max(0.0, min(gaps) - cfg["bump_gap"])
        bumps.append((th, z, amp, 6.0, 6.0))
    truth.bumps = bumps
    truth.holes = [(th, z, float(rng.uniform(6, 12)), float(rng.uniform(5, 9))) for th, z in place(cfg["n_holes"])]
    truth.bridges = [(th, z, 2.5 * pitch, float(rng.uniform(6, 10))) for th, z in place(cfg["n_bridges"])]
    return truth


def render_volumes(truth: SheetTruth, ct: bool = True, block: int = 32):
    """Voxelise the prediction (uint8 0/255) and, if ``ct``, a CT-like uint8 volume; both [z, y, x]."""
    if truth.preset == "realistic":
        return render_realistic(truth, ct)
    cfg = _classic_cfg(truth.preset, truth.overrides)[0] if truth.preset in PRESETS else PRESETS["medium"]
    rng = np.random.default_rng(truth.seed + 1)
    Z, Y, X = truth.shape
    pred = np.zeros((Z, Y, X), dtype=np.uint8)
    ctv = np.zeros((Z, Y, X), dtype=np.uint8) if ct else None
    P, B, H, BR = truth.P, truth.bumps_arr, truth.holes_arr, truth.bridges_arr
    for z0 in range(0, Z, block):
        nz = min(block, Z - z0)
        p, d = m.render_block(P, B, H, BR, z0, np.array([nz, Y, X], dtype=np.int64), truth.half_thickness,
                              1.2, ct)
        if cfg["dropout"] > 0:
            p[(p > 0) & (rng.random(p.shape, dtype=np.float32) < cfg["dropout"])] = 0
        if cfg["speckle"] > 0:
            n = int(cfg["speckle"] * p.size)
            idx = [rng.integers(0, s - 1, n) for s in p.shape]
            for oz in (0, 1):
                for oy in (0, 1):
                    p[np.minimum(idx[0] + oz, nz - 1), idx[1] + oy, idx[2]] = 255
        pred[z0:z0 + nz] = p
        if ct:
            d = np.minimum(d, 50.0)
            v = 30.0 + 180.0 * np.exp(-(d * d) / (2 * 1.2 ** 2)) + rng.normal(0, 10, d.shape).astype(np.float32)
            ctv[z0:z0 + nz] = np.clip(v, 0, 255).astype(np.uint8)
    return pred, ctv


def make_scroll(out: str | os.PathLike, shape=(384, 384, 384), preset: str = "medium", seed: int = 0,
                voxelsize: float = 7.91, ct: bool = True, **overrides) -> Path:
    """Create a synthetic volpkg at ``out`` and return its path. ``shape`` is (z, y, x) voxels;
    ``overrides`` replace preset knobs (see the module docstring)."""
    out = Path(out)
    truth = build_truth(shape, preset, seed, voxelsize, **overrides)
    vp = create_volpkg(out, name=out.stem)
    pred, ctv = render_volumes(truth, ct)
    soft = truth.preset == "realistic" and truth.params["soft"]
    write_ome_zarr(vp.volumes_dir / "synth_pred.zarr", pred, voxelsize,
                   name="synthetic surface prediction" + (" (soft, uint8 probability)" if soft else ""),
                   n_levels=3, algorithm="max")
    if ct:
        write_ome_zarr(vp.volumes_dir / "synth_ct.zarr", ctv, voxelsize, name="synthetic CT", n_levels=3,
                       algorithm="mean")
    truth.save(out)
    return out


def grow_params_for(truth: SheetTruth) -> dict:
    """``seed.json`` values (VC3D keys) that suit ``truth``'s scroll: ``step_size`` about half the
    typical wrap spacing, ``generations`` so a patch can reach across the volume, and
    ``min_area_cm`` the area of a patch ~4 steps across, at most 5% of the largest face of the volume (the 0.3 cm² default is a patch ~690 voxels
    square at 7.91 µm: more sheet than a 160³ scroll holds)."""
    step = int(min(20, max(4, round(0.5 * truth.pitch))))
    gens = int(min(200, max(10, math.ceil(max(truth.shape) / step))))
    vx_cm = truth.voxelsize * 1e-4
    Z, Y, X = truth.shape
    area = float(f"{min((4 * step) ** 2, 0.05 * max(Z * Y, Y * X, Z * X)) * vx_cm ** 2:.2g}")
    return {"mode": "seed", "generations": gens, "step_size": step, "min_area_cm": area}


def write_grow_params(volpkg: str | os.PathLike, truth: SheetTruth) -> list[Path]:
    """Write ``seed.json`` and ``expand.json`` (mode expansion) from :func:`grow_params_for` at the
    volpkg root (the daemon's ``params_files``); returns the paths."""
    from ..formats.jsonio import atomic_write_json
    base = grow_params_for(truth)
    out = []
    for name, mode in (("seed.json", "seed"), ("expand.json", "expansion")):
        p = Path(volpkg) / name
        atomic_write_json(p, {**base, "mode": mode})
        out.append(p)
    return out
