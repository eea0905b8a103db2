"""Prize-style scores of a set of final sheets against a synthetic scroll's ground truth.

The "Unwrapping at Scale" line (coverage >= 70 % at a sheet-switch rate <= 0.5 %) measured the way
:mod:`vcd.synth.score` scores surfaces:

- *true coverage*: the share of the true sheet (points ``spacing`` voxels apart inside the volume,
  :meth:`~vcd.synth.truth.SheetTruth.sheet_samples`) lying within ``tol`` voxels of a traced point
  *on the same wrap* (the traced point's nearest true sheet point is less than half a turn away in
  unwrapped angle). Traced quads are densified (:func:`vcd.synth.score.densify`) so ``tol`` may be
  smaller than the grid step;
- *switch rate*: the traced area outside each sheet's largest jump-free piece
  (:func:`vcd.synth.score.score_surface`: ``1 - jump_free_fraction`` of its valid points), over the
  whole traced area. Points are counted per valid grid vertex (the sheets are regular grids).

Surfaces are ``[rows, cols, 3]`` grids of ``(x, y, z)`` voxels, ``-1`` = invalid (masks applied).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..kernels.points import valid_mask
from .score import densify, score_surface


def _grid_step(points: np.ndarray) -> float:
    """Median distance (voxels) between column neighbours of a grid (1.0 without any)."""
    v = valid_mask(points)
    h = v[:, :-1] & v[:, 1:]
    if not h.any():
        return 1.0
    return float(np.median(np.linalg.norm(points[:, 1:][h] - points[:, :-1][h], axis=1)))


def true_coverage(surfaces: list[np.ndarray], truth, tol: float = 2.0, spacing: float = 2.0) -> float:
    """Share (0..1) of the true sheet within ``tol`` voxels of a traced point on the same wrap."""
    samples, s_theta = truth.sheet_samples(spacing)
    clouds = []
    for s in surfaces:
        s = np.asarray(s, np.float64)
        if valid_mask(s).any():
            clouds.append(densify(s, max(1, int(math.ceil(_grid_step(s) / (tol * 0.7))))))
    if len(samples) == 0 or not clouds:
        return 0.0
    pts = np.concatenate(clouds)
    _, t_theta = truth.nearest(pts)
    tree = cKDTree(pts)
    k = min(8, len(pts))
    d, idx = tree.query(samples, k=k, distance_upper_bound=tol + 1e-6)
    d, idx = d.reshape(len(samples), k), idx.reshape(len(samples), k)
    hit = np.isfinite(d)
    th = np.where(hit, t_theta[np.minimum(idx, len(pts) - 1)], np.inf)
    same = hit & (np.abs(th - s_theta[:, None]) < math.pi)
    return float(same.any(1).mean())


def switch_rate(surfaces: list[np.ndarray], truth) -> tuple[float, list[dict]]:
    """(share of traced vertices outside each sheet's largest jump-free piece, per-sheet scores)."""
    rows, total, off = [], 0, 0.0
    for s in surfaces:
        sc = score_surface(s, truth)
        n = sc["n_valid"]
        total += n
        off += n * (1.0 - sc["jump_free_fraction"])
        rows.append({k: sc[k] for k in ("n_valid", "mean_dist", "p95_dist", "jumps", "jump_free_fraction",
                                        "wraps_covered")})
    return (off / total if total else 0.0), rows


def prize_score(surfaces: list[np.ndarray], truth, tol: float = 2.0, spacing: float = 2.0) -> dict:
    """``true_coverage``, ``true_switch_rate`` (both 0..1), ``tol_vx`` and per-sheet ``sheets`` scores
    (:func:`vcd.synth.score.score_surface` keys) of ``surfaces`` against ``truth``; ``prize_line_met``
    when coverage >= 0.70 at a switch rate <= 0.005."""
    cov = true_coverage(surfaces, truth, tol, spacing)
    sw, rows = switch_rate(surfaces, truth)
    return {"true_coverage": cov, "true_switch_rate": sw, "tol_vx": tol, "sample_spacing_vx": spacing,
            "sheets": rows, "prize_line_met": bool(cov >= 0.70 and sw <= 0.005)}
