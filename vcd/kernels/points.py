"""The one rule for which vertices of a surface grid are valid (VC3D's tifxyz loader rule).

A grid is ``points[row, col, :] = (x, y, z)`` in level-0 voxels. A vertex is valid when
``x != -1`` and ``z > 0``; everything that writes a grid marks invalid vertices ``(-1, -1, -1)``.
Lives in ``kernels`` (the lowest package) so kernels, formats and every tool share it.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

#: the coordinate value of an invalid vertex
INVALID = -1.0


def valid_mask(points: np.ndarray) -> np.ndarray:
    """The one vertex-validity rule: ``x != -1`` and ``z > 0``.

    Parameters
    ----------
    points : numpy.ndarray
        ``[..., 3]`` vertices ``(x, y, z)``, voxels (a grid is ``[rows, cols, 3]``).

    Returns
    -------
    numpy.ndarray
        bool ``[...]``: True where valid.
    """
    return (points[..., 0] != INVALID) & (points[..., 2] > 0)


def valid_quads(valid: np.ndarray) -> np.ndarray:
    """The quads whose four corners are valid.

    Parameters
    ----------
    valid : numpy.ndarray
        bool ``[rows, cols]`` vertex validity (:func:`valid_mask`).

    Returns
    -------
    numpy.ndarray
        bool ``[rows-1, cols-1]``: True for quad ``[r, c]`` .. ``[r+1, c+1]`` when all its corners are valid.
    """
    return valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:] & valid[1:, 1:]


@nb.njit(cache=True, inline="always")
def quad_valid(valid, r, c):
    """The numba twin of :func:`valid_quads` for one quad: True when the quad ``[r, c]`` ..
    ``[r+1, c+1]`` lies inside the bool ``[rows, cols]`` map ``valid`` and its four corners are valid."""
    return (0 <= r and 0 <= c and r + 1 < valid.shape[0] and c + 1 < valid.shape[1] and valid[r, c]
            and valid[r + 1, c] and valid[r, c + 1] and valid[r + 1, c + 1])


@nb.njit(cache=True, inline="always")
def quad_triangle(grid, r, c, t):
    """Corners ``(a, b, c)`` (views of ``grid[row, col] = (x, y, z)``) of triangle ``t`` (0 or 1) of
    the quad ``[r, c]`` .. ``[r+1, c+1]``: ``(P00, P01, P10)`` and ``(P11, P10, P01)``."""
    if t == 0:
        return grid[r, c], grid[r, c + 1], grid[r + 1, c]
    return grid[r + 1, c + 1], grid[r + 1, c], grid[r, c + 1]


def densify_grid(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points about ``spacing`` apart over a grid's valid quads, for "is this point near the surface"
    queries.

    Parameters
    ----------
    points : numpy.ndarray
        float ``[rows, cols, 3]`` grid of ``(x, y, z)`` voxels, -1 = invalid.
    spacing : float
        Target point spacing, voxels.

    Returns
    -------
    numpy.ndarray
        float64 ``[N, 3]``: the valid vertices plus bilinear points inside the valid quads.
    """
    p = np.asarray(points, np.float64)
    v = valid_mask(p)
    out = [p[v]]
    q = v[:-1, :-1] & v[1:, :-1] & v[:-1, 1:] & v[1:, 1:]
    if q.any():
        h = v[:, :-1] & v[:, 1:]
        step = float(np.median(np.linalg.norm(p[:, 1:][h] - p[:, :-1][h], axis=1))) if h.any() else spacing
        f = max(1, int(math.ceil(step / max(spacing, 1e-6))))
        if f > 1:
            a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
            t = np.arange(f + 1) / f
            for u in t:
                for w in t:
                    if (u, w) != (0.0, 0.0):
                        out.append((1 - u) * (1 - w) * a + (1 - u) * w * b + u * (1 - w) * c + u * w * d)
    return np.concatenate(out)

