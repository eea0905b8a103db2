"""Issue 14's tiling: perfect, densely overlapping 20-voxel truth patches on a clean spiral whose wraps
are closer than a trace cell, plus hand-planted one-wrap jump patches (the way real patches go wrong).

Used by ``tests/trace/test_follow_patches.py`` and ``bench/trace_tiling.py``. Units: voxels; grids are
``[row, col] = (x, y, z)`` with rows along z and columns along the sheet (increasing theta).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from vcd.formats.tifxyz import write_surface
from vcd.formats.volpkg import create_volpkg
from vcd.formats.volume import write_ome_zarr
from vcd.grow.linking import link_new_patch
from vcd.synth import load_truth
from vcd.synth.generate import build_truth, render_volumes
from vcd.trace.run import run_trace

GRID = 20.0      #: patch grid step, voxels
COLS = 24        #: columns per patch
ROWS = 5         #: rows per patch (80 voxels of z)


def spiral_scroll(root: Path, pitch: float = 16.0, shape=(100, 192, 192), seed: int = 2,
                  half_thickness: float = 1.5) -> Path:
    """A clean ("easy") spiral volpkg with wraps ``pitch`` voxels apart and sheets
    ``2·half_thickness`` voxels thick; ``shape`` (z, y, x) voxels."""
    t = build_truth(shape, "easy", seed)
    r_max = t.r0 + (t.theta1 - t.theta0) / (2 * math.pi) * t.pitch  # keep the outer radius of the preset
    theta1 = t.theta0 + 2 * math.pi * (r_max - t.r0) / pitch
    t = dataclasses.replace(t, pitch=pitch, theta1=theta1, half_thickness=half_thickness, preset="easy")
    vp = create_volpkg(root, name=root.stem)
    pred, _ = render_volumes(t, ct=False)
    write_ome_zarr(vp.volumes_dir / "synth_pred.zarr", pred, t.voxelsize, name="synthetic surface prediction",
                   n_levels=1, algorithm="max")
    t.save(root)
    return root


def _end(t, th: float, zm: float, cols: int = COLS, step: float = GRID) -> float:
    """Angle of the last column of a patch starting at ``th`` (arc length at slice ``zm``)."""
    for _ in range(cols - 1):
        th += step / max(t.radius(th, zm), 1.0)
    return th


def _start_before(t, th_end: float, zm: float, cols: int = COLS) -> float:
    """The largest start angle whose patch ends before ``th_end``."""
    th = th_end - cols * GRID / t.radius(th_end, zm)
    while _end(t, th, zm, cols) > th_end:
        th -= 0.02
    return th


def _end_inside(t, margin: float = 6.0) -> float:
    """The last angle before the sheet's mid slice first leaves the volume (``margin`` voxels), or
    ``theta1`` (the realistic spiral runs on past the volume's sides)."""
    Z, Y, X = t.shape
    th = t.theta0
    while th < t.theta1:
        p = t.point(th, Z / 2)
        if not (margin <= p[0] <= X - 1 - margin and margin <= p[1] <= Y - 1 - margin):
            return th - 0.05
        th += 0.05
    return t.theta1


def _patch(t, th: float, z0: float, cols: int = COLS, rows: int = ROWS, step: float = GRID) -> np.ndarray:
    """A truth patch starting at angle ``th`` (radians) and slice ``z0``: ``rows`` × ``cols`` points
    ``step`` voxels apart (columns by arc length at the middle row)."""
    zm = z0 + 0.5 * (rows - 1) * step
    ths = [th]
    for _ in range(cols - 1):
        ths.append(ths[-1] + step / max(t.radius(ths[-1], zm), 1.0))
    return t.sample_grid(th, ths[-1] - 1e-9, z0, z0 + (rows - 1) * step + 1e-9, step)[:, :cols]


def add(vp: Path, name: str, grid: np.ndarray, step: float = GRID) -> str:
    write_surface(vp / "paths" / name, grid, {"scale": [1 / step, 1 / step], "source": "vcd_grow"})
    return name


def tile(vp: Path, n: int = 60, seed: int = 0, th_lo_wraps: float = 1.0) -> list[str]:
    """``n`` perfect patches with start angles evenly spread (jittered) from ``theta0 + 2π·th_lo_wraps``
    to where a patch still fits, alternating start slices so that every spot is covered several times."""
    t = load_truth(vp)
    rng = np.random.default_rng(seed)
    Z = t.shape[0]
    lo = t.theta0 + 2 * math.pi * th_lo_wraps
    hi = _start_before(t, _end_inside(t) - 0.05, Z / 2)
    names = []
    for i in range(n):
        th = lo + (hi - lo) * (i + rng.uniform(-0.3, 0.3)) / max(1, n - 1)
        z0 = 2.0 + (Z - 4 - (ROWS - 1) * GRID) * ((i * 0.37) % 1.0)
        names.append(add(vp, f"auto_grown_{i + 1:017d}", _patch(t, min(max(th, lo), hi), z0)))
    return names


def jump_grid(t, grid: np.ndarray, th_bridge: float, length: float = 25.0) -> np.ndarray:
    """``grid`` (truth points) moved so that past ``th_bridge`` it ramps from its wrap to the next one
    out over ``length`` voxels of arc (smoothstep between the two wraps' points at the same angle and
    slice) — a patch with a one-wrap sheet jump."""
    out = grid.copy()
    v = out[..., 0] != -1
    _, ths = t.nearest(grid[v])
    for (i, j), th in zip(np.argwhere(v), ths):
        if th <= th_bridge:
            continue
        z = float(grid[i, j, 2])
        u = min(1.0, (th - th_bridge) * t.radius(th, z) / length)
        w = 3 * u * u - 2 * u ** 3
        out[i, j] = (1 - w) * t.point(th, z) + w * t.point(th + 2 * math.pi, z)
    return out


def realistic_scroll(root: Path, seed: int = 3, shape=(100, 192, 192)) -> Path:
    """A crushed, tilted, twisted spiral of the realistic family (``seed``), without prediction defects
    (the patches are sampled from the truth anyway)."""
    from vcd.synth import make_scroll
    return make_scroll(root, shape, preset="realistic", seed=seed, ct=False, clean=True)


def plant_jumps(vp: Path, k: int, seed: int = 1, prefix: str = "auto_grown_9") -> list[str]:
    """``k`` one-wrap jump patches (the tiling's shape) spread over the collection; the jump sits in the
    middle third of each patch."""
    t = load_truth(vp)
    rng = np.random.default_rng(seed)
    Z = t.shape[0]
    lo = t.theta0 + 2 * math.pi * 1.0
    hi = _start_before(t, _end_inside(t) - 2 * math.pi - 0.05, Z / 2)  # the next wrap must exist
    names = []
    for i in range(k):
        th = rng.uniform(lo, hi)
        z0 = rng.uniform(2.0, Z - 2 - (ROWS - 1) * GRID)
        g = _patch(t, th, z0)
        zm = z0 + 0.5 * (ROWS - 1) * GRID
        th_b = th + rng.uniform(8, 14) * GRID / t.radius(th, zm)
        names.append(add(vp, f"{prefix}{i:016d}", jump_grid(t, g, th_b)))
    return names


def link(vp: Path) -> None:
    """Link every ``auto_grown_*`` patch with the real linker (``vcd seg-add-overlap``'s library call)
    as if the patches had appeared one by one, as the daemon sees them: each is moved back into
    ``paths/`` and linked against those already there, so every pair is tested once (the links are
    symmetric, so the result is the same as linking each against all)."""
    paths, staging = vp / "paths", vp / "unlinked"
    names = sorted(p.name for p in paths.iterdir() if p.name.startswith("auto_grown_"))
    staging.mkdir()
    for name in names:
        os.rename(paths / name, staging / name)
    for name in names:
        os.rename(staging / name, paths / name)
        link_new_patch(paths, name)
    staging.rmdir()


def middle_seed(vp: Path, names: list[str]) -> str:
    """The tiling patch in the middle of the list (a middle patch of the scroll)."""
    return names[len(names) // 2]


def trace(vp: Path, seed: str, **params) -> dict:
    base = {"step": 1, "src_step": 20, "flip_x": False, "global_steps_per_window": 0,
            "consensus_default_th": 6, "consensus_limit_th": 2, "snapshot_every": 0}
    return run_trace(vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces", {**base, **params},
                     vp / "paths" / seed, warn=lambda m: None)
