"""Measuring a surface prediction's sheets: band thickness and wrap spacing along the normal.

A surface prediction shows each wrap of the scroll as a *band*: voxels whose value is at least the
surface threshold ``t``, a few voxels thick across the sheet. Walking from a band voxel ``p`` along
the sheet's unit normal ``n`` (both ``(x, y, z)`` voxels, block-local), the prediction reads
``v(s) = V(p + s n)`` (trilinear, :func:`vcd.kernels.sample.trilinear_dense`). With

- ``a_+ = min{s > 0 : v(s) < t}`` and ``a_- = min{s > 0 : v(-s) < t}`` (the band's two edges),
- the next band outward ``[b_+, e_+]``: ``b_+ = min{s > a_+ : v(s) >= t}``,
  ``e_+ = min{s > b_+ : v(s) < t}`` (and the same towards ``-n``),

the band's **thickness** is ``a_+ + a_-`` and the **wrap spacing** towards ``+n`` is the
centre-to-centre distance ``(b_+ + e_+) / 2 - (a_+ - a_-) / 2`` (voxels). Walks that leave the block
or find no band within ``reach`` give NaN. Steps of ``ds`` voxels (0.25 here) put each edge within
``ds`` of the threshold crossing.

The normal comes from the structure tensor ``J = G_rho * (grad G_sigma * V)(grad G_sigma * V)^T``:
its eigenvector of largest eigenvalue is across the band, even at a band's centre where the
gradient itself vanishes (:func:`structure_normals`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .sample import trilinear_dense


@nb.njit(cache=True, inline="always")
def _edge(block, x, y, z, nx, ny, nz, sign, s0, thr, reach, ds, inside):
    """First ``s >= s0`` (voxels) along ``sign * n`` where the value crosses ``thr``: leaving the band
    when ``inside`` (value drops below ``thr``), entering one otherwise; NaN past ``reach`` or the
    block's border."""
    s = s0
    zmax, ymax, xmax = block.shape[0] - 1, block.shape[1] - 1, block.shape[2] - 1
    while s <= reach:
        px, py, pz = x + sign * s * nx, y + sign * s * ny, z + sign * s * nz
        if px < 0 or py < 0 or pz < 0 or px > xmax or py > ymax or pz > zmax:
            return np.nan
        v = trilinear_dense(block, px, py, pz)
        if (v < thr) if inside else (v >= thr):
            return s
        s += ds
    return np.nan


@nb.njit(cache=True)
def band_walks(block, pts, nrm, thr, reach):
    """Sheet thickness and wrap spacing at points on bands of the prediction, walking along normals (numba).

    Parameters
    ----------
    block : numpy.ndarray
        ``[z, y, x]`` prediction values of a block.
    pts : numpy.ndarray
        float ``[N, 3]`` points ``(x, y, z)``, block-local voxels, on bands.
    nrm : numpy.ndarray
        float ``[N, 3]`` unit normals ``(x, y, z)``.
    thr : float
        The surface threshold (prediction value).
    reach : float
        Longest walk, voxels.

    Returns
    -------
    numpy.ndarray
        float32 ``[N, 3]``: thickness, spacing towards ``+n``, spacing towards ``-n`` (voxels; NaN where
        not measured).
    """
    ds = 0.25
    out = np.full((pts.shape[0], 3), np.nan, dtype=np.float32)
    for i in range(pts.shape[0]):
        x, y, z = pts[i, 0], pts[i, 1], pts[i, 2]
        nx, ny, nz = nrm[i, 0], nrm[i, 1], nrm[i, 2]
        ap = _edge(block, x, y, z, nx, ny, nz, 1.0, 0.0, thr, reach, ds, True)
        am = _edge(block, x, y, z, nx, ny, nz, -1.0, 0.0, thr, reach, ds, True)
        if np.isnan(ap) or np.isnan(am):
            continue
        out[i, 0] = ap + am
        centre = 0.5 * (ap - am)
        for k in range(2):
            sign = 1.0 if k == 0 else -1.0
            a = ap if k == 0 else am
            b = _edge(block, x, y, z, nx, ny, nz, sign, a, thr, reach, ds, False)
            if np.isnan(b):
                continue
            e = _edge(block, x, y, z, nx, ny, nz, sign, b, thr, reach, ds, True)
            if np.isnan(e):
                continue
            out[i, 1 + k] = 0.5 * (b + e) - sign * centre
    return out


def structure_normals(block: np.ndarray, pts_zyx: np.ndarray, sigma: float = 1.0,
                      rho: float = 2.5) -> np.ndarray:
    """Unit sheet normals from the structure tensor (whole-array filters, eigen-solves at the points).

    Parameters
    ----------
    block : numpy.ndarray
        ``[z, y, x]`` prediction values.
    pts_zyx : numpy.ndarray
        int ``[N, 3]`` voxel indices ``[z, y, x]`` into ``block``.
    sigma : float
        Gradient scale, voxels.
    rho : float
        Integration scale, voxels.

    Returns
    -------
    numpy.ndarray
        float ``[N, 3]`` unit normals ``(x, y, z)`` (the tensor's leading eigenvector; sign arbitrary).
    """
    from scipy import ndimage
    f = block.astype(np.float32)
    g = [ndimage.gaussian_filter(f, sigma, order=o) for o in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]  # d/dz, d/dy, d/dx
    z, y, x = pts_zyx[:, 0], pts_zyx[:, 1], pts_zyx[:, 2]
    J = np.empty((len(pts_zyx), 3, 3), dtype=np.float64)
    for a in range(3):
        for b in range(a, 3):
            jab = ndimage.gaussian_filter(g[a] * g[b], rho)[z, y, x]
            J[:, a, b] = J[:, b, a] = jab
    _, vecs = np.linalg.eigh(J)
    n_zyx = vecs[:, :, 2]                       # eigenvalues ascending: the last is across the band
    return np.ascontiguousarray(n_zyx[:, ::-1], dtype=np.float64)  # (x, y, z)
