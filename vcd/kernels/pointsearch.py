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


@nb.njit(cache=True)
def _closest_on_triangle(px, py, pz, a, b, c, out):
    """Closest point of triangle (a, b, c) to p, written to ``out``; returns the squared distance.
    Barycentric clamping (projection, then edge clamps)."""
    e0x, e0y, e0z = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    e1x, e1y, e1z = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    vx, vy, vz = a[0] - px, a[1] - py, a[2] - pz
    A = e0x * e0x + e0y * e0y + e0z * e0z
    B = e0x * e1x + e0y * e1y + e0z * e1z
    C = e1x * e1x + e1y * e1y + e1z * e1z
    D = e0x * vx + e0y * vy + e0z * vz
    E = e1x * vx + e1y * vy + e1z * vz
    det = A * C - B * B
    if det <= 1e-12:
        out[0], out[1], out[2] = a[0], a[1], a[2]
        return vx * vx + vy * vy + vz * vz
    s = (B * E - C * D) / det
    t = (B * D - A * E) / det
    if s < 0 or t < 0 or s + t > 1:
        # clamp to the best of the three edges
        best = 1e30
        for k in range(3):
            if k == 0:
                ox, oy, oz, dx, dy, dz = a[0], a[1], a[2], e0x, e0y, e0z
            elif k == 1:
                ox, oy, oz, dx, dy, dz = a[0], a[1], a[2], e1x, e1y, e1z
            else:
                ox, oy, oz, dx, dy, dz = b[0], b[1], b[2], c[0] - b[0], c[1] - b[1], c[2] - b[2]
            L = dx * dx + dy * dy + dz * dz
            u = 0.0 if L <= 1e-12 else ((px - ox) * dx + (py - oy) * dy + (pz - oz) * dz) / L
            u = min(1.0, max(0.0, u))
            qx, qy, qz = ox + u * dx, oy + u * dy, oz + u * dz
            d = (qx - px) ** 2 + (qy - py) ** 2 + (qz - pz) ** 2
            if d < best:
                best = d
                out[0], out[1], out[2] = qx, qy, qz
        return best
    qx = a[0] + s * e0x + t * e1x
    qy = a[1] + s * e0y + t * e1y
    qz = a[2] + s * e0z + t * e1z
    out[0], out[1], out[2] = qx, qy, qz
    return (qx - px) ** 2 + (qy - py) ** 2 + (qz - pz) ** 2


@nb.njit(cache=True)
def closest_on_grid(grid, valid, queries, cand_r, cand_c):
    """Like :func:`dist_to_grid` but also returns the closest surface points (N×3) and the grid
    location (row, col, continuous) of each."""
    R, C = valid.shape
    n = queries.shape[0]
    dist = np.full(n, np.inf)
    pts = np.full((n, 3), -1.0)
    loc = np.full((n, 2), -1.0)
    tmp = np.empty(3)
    for i in range(n):
        px, py, pz = queries[i, 0], queries[i, 1], queries[i, 2]
        best = np.inf
        for k in range(cand_r.shape[1]):
            r, c = cand_r[i, k], cand_c[i, k]
            if r < 0:
                continue
            d = (grid[r, c, 0] - px) ** 2 + (grid[r, c, 1] - py) ** 2 + (grid[r, c, 2] - pz) ** 2
            if d < best:
                best = d
                pts[i, 0], pts[i, 1], pts[i, 2] = grid[r, c, 0], grid[r, c, 1], grid[r, c, 2]
                loc[i, 0], loc[i, 1] = r, c
            for dr in range(-1, 1):
                for dc in range(-1, 1):
                    r0, c0 = r + dr, c + dc
                    if r0 < 0 or c0 < 0 or r0 + 1 >= R or c0 + 1 >= C:
                        continue
                    if not (valid[r0, c0] and valid[r0 + 1, c0] and valid[r0, c0 + 1] and valid[r0 + 1, c0 + 1]):
                        continue
                    d = _closest_on_triangle(px, py, pz, grid[r0, c0], grid[r0, c0 + 1], grid[r0 + 1, c0], tmp)
                    if d < best:
                        best = d
                        pts[i, 0], pts[i, 1], pts[i, 2] = tmp[0], tmp[1], tmp[2]
                        loc[i, 0], loc[i, 1] = r0 + 0.5, c0 + 0.5
                    d = _closest_on_triangle(px, py, pz, grid[r0 + 1, c0 + 1], grid[r0 + 1, c0], grid[r0, c0 + 1], tmp)
                    if d < best:
                        best = d
                        pts[i, 0], pts[i, 1], pts[i, 2] = tmp[0], tmp[1], tmp[2]
                        loc[i, 0], loc[i, 1] = r0 + 0.5, c0 + 0.5
        dist[i] = math.sqrt(best)
    return dist, pts, loc
