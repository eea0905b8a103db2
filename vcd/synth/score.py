"""Score a surface against the ground truth of a synthetic scroll.

For a grid ``points[row, col] = (x, y, z)``:

- *distance*: Euclidean distance (voxels) of each valid point to the true sheet (mean, p95, max);
- *sheet jump*: a pair of 4-neighbouring valid grid points whose nearest-sheet angles differ by more
  than pi — they lie on different wraps (neighbours are a few voxels apart, i.e. far less than a
  turn);
- *jump-free fraction*: the largest connected set of valid points joined by non-jump edges, over all
  valid points;
- *wraps covered*: ``(max theta - min theta) / 2pi`` over the largest jump-free piece.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..kernels.points import valid_mask, valid_quads
from .truth import SheetTruth


def jump_edges(theta: np.ndarray, valid: np.ndarray):
    """Boolean maps of horizontal ``[r, c]–[r, c+1]`` and vertical ``[r, c]–[r+1, c]`` jump edges."""
    h = valid[:, :-1] & valid[:, 1:] & (np.abs(theta[:, :-1] - theta[:, 1:]) > math.pi)
    v = valid[:-1, :] & valid[1:, :] & (np.abs(theta[:-1, :] - theta[1:, :]) > math.pi)
    return h, v


def _components(valid, theta):
    rows, cols = valid.shape
    idx = np.arange(rows * cols).reshape(rows, cols)
    hj, vj = jump_edges(theta, valid)
    hok = valid[:, :-1] & valid[:, 1:] & ~hj
    vok = valid[:-1, :] & valid[1:, :] & ~vj
    a = np.concatenate([idx[:, :-1][hok], idx[:-1, :][vok]])
    b = np.concatenate([idx[:, 1:][hok], idx[1:, :][vok]])
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(rows * cols, rows * cols))
    _, labels = connected_components(g, directed=False)
    return labels.reshape(rows, cols), int(hj.sum() + vj.sum())


def score_surface(points: np.ndarray, truth: SheetTruth) -> dict:
    """Accuracy of a ``[rows, cols, 3]`` surface grid against ``truth`` (see module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    valid = valid_mask(points)
    n = int(valid.sum())
    if n == 0:
        return dict(n_valid=0, mean_dist=float("nan"), p95_dist=float("nan"), max_dist=float("nan"),
                    jumps=0, jump_free_fraction=0.0, wraps_covered=0.0, wraps=[])
    dist = np.full(valid.shape, np.nan)
    theta = np.full(valid.shape, np.nan)
    d, th = truth.nearest(points[valid])
    dist[valid], theta[valid] = d, th
    labels, jumps = _components(valid, np.where(valid, theta, 0.0))
    lab_valid = labels[valid]
    counts = np.bincount(lab_valid)
    best = int(np.argmax(counts))
    piece = valid & (labels == best)
    th_piece = theta[piece]
    return dict(
        n_valid=n,
        mean_dist=float(d.mean()),
        p95_dist=float(np.percentile(d, 95)),
        max_dist=float(d.max()),
        jumps=jumps,
        jump_free_fraction=float(counts[best] / n),
        wraps_covered=float((th_piece.max() - th_piece.min()) / (2 * math.pi)),
        wraps=sorted(set(int(w) for w in truth.wrap_of(th))),
    )


def densify(points: np.ndarray, factor: int) -> np.ndarray:
    """Bilinearly upsample the valid quads of a grid by ``factor`` → (N×3) points on the surface."""
    p = np.asarray(points, dtype=np.float64)
    v = valid_mask(p)
    q = valid_quads(v)
    out = [p[v]]
    if factor > 1 and q.any():
        a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
        t = (np.arange(factor + 1) / factor)
        for u in t:
            for w in t:
                out.append((1 - u) * (1 - w) * a + u * (1 - w) * b + (1 - u) * w * c + u * w * d)
    return np.concatenate(out)


def coverage(surfaces: list[np.ndarray], truth: SheetTruth, tol: float = 2.0, spacing: float = 2.0,
             step: float | None = None) -> float:
    """Fraction of the true sheet (sampled every ``spacing`` voxels inside the volume) that lies
    within ``tol`` voxels of some surface. Surfaces are grids of (x, y, z); ``step`` (grid spacing in
    voxels, guessed if None) sets how finely quads are densified."""
    samples, _ = truth.sheet_samples(spacing)
    if len(samples) == 0 or not surfaces:
        return 0.0
    clouds = []
    for s in surfaces:
        s = np.asarray(s, dtype=np.float64)
        st = step
        if st is None:
            v = (s[:, :-1, 0] != -1) & (s[:, 1:, 0] != -1)
            st = float(np.median(np.linalg.norm(s[:, 1:][v] - s[:, :-1][v], axis=1))) if v.any() else 1.0
        clouds.append(densify(s, max(1, int(math.ceil(st / (tol * 0.7))))))
    tree = cKDTree(np.concatenate(clouds))
    d, _ = tree.query(samples, distance_upper_bound=tol + 1e-6)
    return float(np.mean(d <= tol))


def band_thickness(pred: np.ndarray, points: np.ndarray, normals: np.ndarray, reach: float,
                   threshold: int = 170, step: float = 0.05) -> np.ndarray:
    """Thickness (voxels) of the predicted band across each sheet point: the length of the segment
    ``point + t * normal``, ``|t| <= reach``, whose nearest voxel of ``pred`` ([z, y, x]) is ``>= threshold``.

    ``points``/``normals`` are N×3 (x, y, z); keep ``reach`` below the distance to the next band. Averaged
    over many points this is unbiased for a digital band (nearest-voxel rounding has zero mean)."""
    t = np.arange(-reach, reach + 1e-9, step)
    q = np.rint(points[:, None, :] + t[None, :, None] * normals[:, None, :]).astype(np.int64)
    Z, Y, X = pred.shape
    ok = (q[..., 0] >= 0) & (q[..., 0] < X) & (q[..., 1] >= 0) & (q[..., 1] < Y) & (q[..., 2] >= 0) & (q[..., 2] < Z)
    q = np.where(ok[..., None], q, 0)
    on = ok & (pred[q[..., 2], q[..., 1], q[..., 0]] >= threshold)
    return on.sum(1) * step
