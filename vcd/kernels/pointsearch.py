r"""Exact point-to-surface distances for quad-grid surfaces.

A surface grid ``P[row, col] = (x, y, z)`` is the union of its valid quads, each split into the
triangles ``(P00, P01, P10)`` and ``(P11, P10, P01)``. For a query point ``q`` and a few candidate
grid vertices (from a k-d tree over the valid vertices), :func:`dist_to_grid` returns the exact
minimum distance (voxels) from ``q`` to every triangle of every quad touching a candidate vertex.
Candidate-quad search means the answer is exact whenever the closest quad touches one of the
``k`` nearest vertices — always the case for the smooth, evenly spaced grids vcd writes.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True)
def point_triangle_dist2(px, py, pz, a, b, c):
    """Squared distance from point p to triangle (a, b, c) (Ericson, Real-Time Collision Detection §5.1.5)."""
    abx, aby, abz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    acx, acy, acz = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    apx, apy, apz = px - a[0], py - a[1], pz - a[2]
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0 and d2 <= 0:
        return apx * apx + apy * apy + apz * apz
    bpx, bpy, bpz = px - b[0], py - b[1], pz - b[2]
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0 and d4 <= d3:
        return bpx * bpx + bpy * bpy + bpz * bpz
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        v = d1 / (d1 - d3)
        qx, qy, qz = a[0] + v * abx - px, a[1] + v * aby - py, a[2] + v * abz - pz
        return qx * qx + qy * qy + qz * qz
    cpx, cpy, cpz = px - c[0], py - c[1], pz - c[2]
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0 and d5 <= d6:
        return cpx * cpx + cpy * cpy + cpz * cpz
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        w = d2 / (d2 - d6)
        qx, qy, qz = a[0] + w * acx - px, a[1] + w * acy - py, a[2] + w * acz - pz
        return qx * qx + qy * qy + qz * qz
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        qx = b[0] + w * (c[0] - b[0]) - px
        qy = b[1] + w * (c[1] - b[1]) - py
        qz = b[2] + w * (c[2] - b[2]) - pz
        return qx * qx + qy * qy + qz * qz
    denom = 1.0 / (va + vb + vc)
    v = vb * denom
    w = vc * denom
    qx = a[0] + abx * v + acx * w - px
    qy = a[1] + aby * v + acy * w - py
    qz = a[2] + abz * v + acz * w - pz
    return qx * qx + qy * qy + qz * qz


@nb.njit(cache=True)
def dist_to_grid(grid, valid, queries, cand_r, cand_c):
    """Distance (voxels) from each query (N×3, (x, y, z)) to the quads touching its candidate
    vertices ``(cand_r[i, k], cand_c[i, k])``; vertices of quads with an invalid corner are used
    as isolated points. Returns float64[N] (inf if no candidate)."""
    R, C = valid.shape
    out = np.full(queries.shape[0], np.inf)
    for i in range(queries.shape[0]):
        px, py, pz = queries[i, 0], queries[i, 1], queries[i, 2]
        best = np.inf
        for k in range(cand_r.shape[1]):
            r, c = cand_r[i, k], cand_c[i, k]
            if r < 0:
                continue
            d = (grid[r, c, 0] - px) ** 2 + (grid[r, c, 1] - py) ** 2 + (grid[r, c, 2] - pz) ** 2
            if d < best:
                best = d
            for dr in range(-1, 1):
                for dc in range(-1, 1):
                    r0, c0 = r + dr, c + dc
                    if r0 < 0 or c0 < 0 or r0 + 1 >= R or c0 + 1 >= C:
                        continue
                    if not (valid[r0, c0] and valid[r0 + 1, c0] and valid[r0, c0 + 1] and valid[r0 + 1, c0 + 1]):
                        continue
                    d = point_triangle_dist2(px, py, pz, grid[r0, c0], grid[r0, c0 + 1], grid[r0 + 1, c0])
                    if d < best:
                        best = d
                    d = point_triangle_dist2(px, py, pz, grid[r0 + 1, c0 + 1], grid[r0 + 1, c0], grid[r0, c0 + 1])
                    if d < best:
                        best = d
        out[i] = math.sqrt(best)
    return out
