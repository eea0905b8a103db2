"""Make a synthetic scroll volpkg with known ground truth (the test bed and the demo's data).

``make_scroll`` writes ``config.json``, ``volumes/synth_pred.zarr`` (thin binary surface prediction,
uint8 0/255), optionally ``volumes/synth_ct.zarr`` (CT-like intensities), an empty ``paths/`` and
``synth_truth.json``. Presets:

- ``easy``: wraps 20 voxels apart, gentle waviness, no defects;
- ``medium``: 14 voxels apart, waviness that brings wraps to ~9 voxels, holes in the prediction,
  two places where a wrap bulges to ~4 voxels of its neighbour, 1% dropout;
- ``hard``: 11 voxels apart, places where wraps touch (~1.5 voxel gap), false bridges (predicted
  ramps joining wrap w to w+1), holes, speckle noise and 3% dropout.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..formats.volpkg import create_volpkg
from ..formats.volume import write_ome_zarr
from . import model as m
from .truth import SheetTruth

PRESETS = {
    "easy": dict(pitch=20.0, waves=[(1.5, 3.0, 1.0)], n_bumps=0, bump_gap=0, n_holes=0, n_bridges=0,
                 dropout=0.0, speckle=0.0),
    "medium": dict(pitch=14.0, waves=[(2.0, 3.0, 1.0), (1.3, 2.5, 0.5)], n_bumps=2, bump_gap=4.0, n_holes=3,
                   n_bridges=0, dropout=0.01, speckle=0.0),
    "hard": dict(pitch=11.0, waves=[(2.0, 3.0, 1.0), (1.2, 2.5, 1.5)], n_bumps=4, bump_gap=1.5, n_holes=5,
                 n_bridges=4, dropout=0.03, speckle=2e-4),
}


def build_truth(shape, preset: str = "medium", seed: int = 0, voxelsize: float = 7.91) -> SheetTruth:
    """Choose the sheet and its planted features for a volume of ``shape`` = (z, y, x) voxels."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
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
                       theta1=theta1, waves=waves, preset=preset, seed=seed, voxelsize=voxelsize)

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
    cfg = PRESETS.get(truth.preset, PRESETS["medium"])
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
                voxelsize: float = 7.91, ct: bool = True) -> Path:
    """Create a synthetic volpkg at ``out`` and return its path. ``shape`` is (z, y, x) voxels."""
    out = Path(out)
    truth = build_truth(shape, preset, seed, voxelsize)
    vp = create_volpkg(out, name=out.stem)
    pred, ctv = render_volumes(truth, ct)
    write_ome_zarr(vp.volumes_dir / "synth_pred.zarr", pred, voxelsize, name="synthetic surface prediction",
                   n_levels=3, algorithm="max")
    if ct:
        write_ome_zarr(vp.volumes_dir / "synth_ct.zarr", ctv, voxelsize, name="synthetic CT", n_levels=3,
                       algorithm="mean")
    truth.save(out)
    return out
