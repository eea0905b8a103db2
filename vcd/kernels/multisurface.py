r"""Point queries against many quad-grid surfaces at once (the tracer's inner loop).

All surfaces are packed into one array: surface ``s`` occupies rows ``off[s] … off[s] + H_s·W_s``
of ``flat`` (float64 [N, 3], (x, y, z) voxels, row-major over its grid) and ``fvalid``. A query
is answered from one sparse uniform hash over all valid vertices: every vertex within
``d_max + max_edge`` voxels of the query whose surface is wanted is examined. For each such vertex
the kernel tests the vertex and both
triangles ``(P00, P01, P10)``, ``(P11, P10, P01)`` of the (up to 4) valid quads touching it (each
quad once per query, however many of its vertices are in reach), and keeps the minimum per (query,
surface column).

Exactness: a point of a triangle is at most the triangle's longest edge from each of its vertices, so
the closest point of a surface within ``d_max`` of the query always lies on a quad whose vertices are
all within ``d_max + max_edge`` — the reach above is therefore safe.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .pointsearch import _closest_on_triangle, hash_cells_within, hash_row_span
from .solve import lstsq2


@nb.njit(cache=True)
def _tri_params(a, b, c, p):
    """``(s, t)`` with ``p = a + s (b - a) + t (c - a)`` (p on the triangle's plane)."""
    s, t, _ = lstsq2(b[0] - a[0], b[1] - a[1], b[2] - a[2], c[0] - a[0], c[1] - a[1], c[2] - a[2],
                     p[0] - a[0], p[1] - a[1], p[2] - a[2], 1e-12)
    return s, t


@nb.njit(cache=True)
def closest_per_surface(flat, fvalid, off, shape, gsurf, lo, dims, cell, keys, starts, order, queries, colmap,
                        ncol, reach, max_edge, enough, tested, stamp0):
    """Closest point of each wanted surface to each query.

    ``queries`` float64 [Q, 3]; ``colmap[s]`` = output column of surface ``s`` (-1: not wanted); the
    vertex hash ``(lo, dims, cell, keys, starts, order)`` buckets the packed valid vertices (global
    indices into ``flat``), ``gsurf[g]`` = surface of packed vertex ``g``. Vertices farther than
    ``reach`` voxels are not examined; nor are the quads of a vertex farther than the best distance so
    far + ``max_edge`` (they cannot be closer), nor anything more for a pair already within ``enough``
    voxels (0: exact closest points). Returns ``dist`` float64 [Q, ncol] (inf where nothing was in
    reach), ``pts`` float64 [Q, ncol, 3] (voxels) and ``locs`` float64 [Q, ncol, 2]: the closest
    point's fractional (row, col) in its surface's grid (-1 where nothing was in reach).

    ``tested`` int64 [N] is scratch kept by the caller across calls: query ``i`` marks each quad it has
    tested (by its first vertex) with ``stamp0 + i + 1``, so the caller passes a ``stamp0`` above every
    mark already there (nothing is allocated per call, however many surfaces are packed)."""
    nq = queries.shape[0]
    dist2 = np.full((nq, ncol), np.inf)
    pts = np.full((nq, ncol, 3), -1.0)
    locs = np.full((nq, ncol, 2), -1.0)
    tmp = np.empty(3)
    a = np.empty(3)
    b = np.empty(3)
    c = np.empty(3)
    reach2 = reach * reach
    enough2 = enough * enough
    for i in range(nq):
        px, py, pz = queries[i, 0], queries[i, 1], queries[i, 2]
        ix0, ix1, iy0, iy1, iz0, iz1 = hash_cells_within(px, py, pz, reach, lo, dims, cell)
        for iz in range(iz0, iz1 + 1):
            for iy in range(iy0, iy1 + 1):
                b0, b1 = hash_row_span(px, py, pz, reach, lo, dims, cell, keys, starts, iy, iz, ix0, ix1)
                for m in range(b0, b1):
                    g = order[m]
                    s = gsurf[g]
                    j = colmap[s]
                    if j < 0:
                        continue
                    d = (flat[g, 0] - px) ** 2 + (flat[g, 1] - py) ** 2 + (flat[g, 2] - pz) ** 2
                    if d > reach2:
                        continue
                    best = dist2[i, j]
                    if best <= enough2:
                        continue
                    H, W = shape[s, 0], shape[s, 1]
                    r, cc = (g - off[s]) // W, (g - off[s]) % W
                    if d < best:
                        dist2[i, j] = d
                        pts[i, j, 0], pts[i, j, 1], pts[i, j, 2] = flat[g, 0], flat[g, 1], flat[g, 2]
                        locs[i, j, 0], locs[i, j, 1] = r, cc
                    elif d > (math.sqrt(best) + max_edge) ** 2:
                        continue
                    for dr in range(-1, 1):
                        for dc in range(-1, 1):
                            r0, c0 = r + dr, cc + dc
                            if r0 < 0 or c0 < 0 or r0 + 1 >= H or c0 + 1 >= W:
                                continue
                            g00 = off[s] + r0 * W + c0
                            g01, g10, g11 = g00 + 1, g00 + W, g00 + W + 1
                            if tested[g00] == stamp0 + i + 1:  # reached before from another of its vertices
                                continue
                            tested[g00] = stamp0 + i + 1
                            if not (fvalid[g00] and fvalid[g01] and fvalid[g10] and fvalid[g11]):
                                continue
                            for t in range(2):
                                if t == 0:
                                    ga, gb, gc = g00, g01, g10
                                else:
                                    ga, gb, gc = g11, g10, g01
                                for q in range(3):
                                    a[q], b[q], c[q] = flat[ga, q], flat[gb, q], flat[gc, q]
                                d = _closest_on_triangle(px, py, pz, a, b, c, tmp)
                                if d < dist2[i, j]:
                                    dist2[i, j] = d
                                    pts[i, j, 0], pts[i, j, 1], pts[i, j, 2] = tmp[0], tmp[1], tmp[2]
                                    su, sv = _tri_params(a, b, c, tmp)
                                    if t == 0:
                                        locs[i, j, 0], locs[i, j, 1] = r0 + sv, c0 + su
                                    else:
                                        locs[i, j, 0], locs[i, j, 1] = r0 + 1 - sv, c0 + 1 - su
    return np.sqrt(dist2), pts, locs


class PackedSurfaces:
    """Many surfaces packed for :func:`closest_per_surface`, with one vertex hash over all of them.

    ``grids[s]`` float [H, W, 3] (x, y, z) voxels, ``valids[s]`` bool [H, W]."""

    CELL = 8.0  #: hash cell side, voxels

    def __init__(self, grids, valids):
        from .pointsearch import build_vertex_hash, max_quad_edge
        sizes = np.array([g.shape[0] * g.shape[1] for g in grids], np.int64)
        self.off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.shape = np.array([g.shape[:2] for g in grids], np.int64).reshape(-1, 2)
        self.flat = np.ascontiguousarray(np.concatenate([g.reshape(-1, 3) for g in grids]), dtype=np.float64)
        self.fvalid = np.ascontiguousarray(np.concatenate([v.reshape(-1) for v in valids]))
        self.gsurf = np.repeat(np.arange(len(grids), dtype=np.int64), sizes)
        self.hash = build_vertex_hash(self.flat[:, None, :], self.fvalid[:, None], self.CELL)
        self.max_edge = max([max_quad_edge(np.ascontiguousarray(g, dtype=np.float64), v)
                             for g, v in zip(grids, valids)] + [0.0])
        self._colmap = np.full(len(grids), -1, np.int64)
        self._tested = np.zeros(len(self.flat), np.int64)  # closest_per_surface's scratch and its last mark
        self._stamp = 0

    def closest(self, queries: np.ndarray, surfaces, d_max: float, enough: float = 0.0):
        """``(dist [Q, S], pts [Q, S, 3])`` from each (x, y, z) query (Q×3) to each of ``surfaces``
        (S indices); exact for distances ≤ ``d_max`` voxels (a larger value or inf beyond). With
        ``enough`` > 0 a pair stops at the first point within ``enough`` (for "within?" tests)."""
        d, pts, _ = self.closest_locs(queries, surfaces, d_max, enough)
        return d, pts

    def closest_locs(self, queries: np.ndarray, surfaces, d_max: float, enough: float = 0.0):
        """:meth:`closest` plus ``locs [Q, S, 2]``: each closest point's fractional (row, col) in its
        surface's grid (-1 where nothing is within reach)."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float64).reshape(-1, 3))
        surfaces = np.asarray(surfaces, np.int64)
        lo, dims, keys, starts, order = self.hash
        self._colmap[surfaces] = np.arange(len(surfaces))
        try:
            return closest_per_surface(self.flat, self.fvalid, self.off, self.shape, self.gsurf, lo, dims, self.CELL,
                                       keys, starts, order, queries, self._colmap, len(surfaces),
                                       d_max + self.max_edge, self.max_edge, enough, self._tested, self._stamp)
        finally:
            self._colmap[surfaces] = -1
            self._stamp += len(queries)

    def walk(self, surfaces, locs, targets, max_disp, iters: int = 12, span=0.0):
        """Walk each surface's own grid from ``locs`` (N×2 fractional (row, col)) towards the (x, y, z)
        ``targets`` (N×3, voxels), at most ``max_disp`` (scalar or N) grid units, then (``span`` > 0,
        scalar or N, voxels) slide to that distance from the start: see :func:`walk_many`.
        Returns ``(locs, pts, ok, tangential)``."""
        surfaces = np.asarray(surfaces, np.int64).reshape(-1)
        md = np.ascontiguousarray(np.broadcast_to(np.asarray(max_disp, np.float64), surfaces.shape))
        sp = np.ascontiguousarray(np.broadcast_to(np.asarray(span, np.float64), surfaces.shape))
        return walk_many(self.flat, self.fvalid, self.off, self.shape, surfaces,
                         np.ascontiguousarray(locs, dtype=np.float64).reshape(-1, 2),
                         np.ascontiguousarray(targets, dtype=np.float64).reshape(-1, 3), md, int(iters), sp)

    def at(self, surfaces, locs):
        """Bilinear (x, y, z) of each surface at its fractional (row, col) ``locs`` (N×2) and whether
        the loc is valid (inside the grid, its quad's 4 vertices valid)."""
        return sample_many(self.flat, self.fvalid, self.off, self.shape, np.asarray(surfaces, np.int64),
                           np.ascontiguousarray(locs, dtype=np.float64).reshape(-1, 2))


@nb.njit(cache=True)
def _eval(flat, fvalid, o, H, W, r, c, out):
    """Bilinear point and its (row, col) derivatives at fractional ``(r, c)`` of the surface at packed
    offset ``o`` (``H × W``); ``out`` [3, 3] = (P, dP/drow, dP/dcol). False if the loc is invalid:
    outside the grid or a vertex of its quad invalid."""
    if not (r >= 0.0 and c >= 0.0 and r <= H - 1 and c <= W - 1) or H < 2 or W < 2:
        return False
    r0 = min(int(math.floor(r)), H - 2)
    c0 = min(int(math.floor(c)), W - 2)
    fr, fc = r - r0, c - c0
    g00 = o + r0 * W + c0
    g01, g10, g11 = g00 + 1, g00 + W, g00 + W + 1
    if not (fvalid[g00] and fvalid[g01] and fvalid[g10] and fvalid[g11]):
        return False
    for k in range(3):
        a, b, d, e = flat[g00, k], flat[g01, k], flat[g10, k], flat[g11, k]
        out[0, k] = (1 - fr) * ((1 - fc) * a + fc * b) + fr * ((1 - fc) * d + fc * e)
        out[1, k] = (1 - fc) * (d - a) + fc * (e - b)
        out[2, k] = (1 - fr) * (b - a) + fr * (e - d)
    return True


@nb.njit(cache=True)
def sample_many(flat, fvalid, off, shape, surf, locs):
    """Bilinear points (N×3) at ``locs`` (N×2 fractional (row, col)) of surfaces ``surf`` (N) and validity."""
    n = surf.shape[0]
    pts = np.full((n, 3), -1.0)
    ok = np.zeros(n, np.bool_)
    e = np.empty((3, 3))
    for i in range(n):
        s = surf[i]
        if _eval(flat, fvalid, off[s], shape[s, 0], shape[s, 1], locs[i, 0], locs[i, 1], e):
            ok[i] = True
            pts[i, 0], pts[i, 1], pts[i, 2] = e[0, 0], e[0, 1], e[0, 2]
    return pts, ok


@nb.njit(cache=True)
def walk_many(flat, fvalid, off, shape, surf, locs, targets, max_disp, iters, span):
    """Patch-following proposals: from ``locs[i]`` (fractional (row, col) of surface ``surf[i]``) take
    Gauss–Newton steps in that surface's own grid towards ``targets[i]`` ((x, y, z) voxels), each step
    at most 1 grid unit, so the walk stays on the surface's own sheet (it never jumps to another part
    of it that merely passes nearby). It fails (``ok`` False) if it enters an invalid quad (hole, mask,
    edge) or moves more than ``max_disp`` grid units from its start. Returns ``(locs [N, 2], pts [N, 3],
    ok [N], tangential [N])`` — ``tangential``: the part of ``target − point`` along the surface
    (voxels; large when the walk stopped short of the target, e.g. at the patch's edge).

    With ``span[i]`` > 0 the result is then slid along the grid ray from ``locs[i]`` so that it lies
    ``span[i]`` voxels from the surface's own point at ``locs[i]`` (3 rescaling rounds, each factor
    clipped to [0.5, 2]; leaving the valid surface fails)."""
    n = surf.shape[0]
    out_l = np.full((n, 2), -1.0)
    pts = np.full((n, 3), -1.0)
    ok = np.zeros(n, np.bool_)
    tang = np.full(n, np.inf)
    e = np.empty((3, 3))
    for i in range(n):
        s = surf[i]
        o, H, W = off[s], shape[s, 0], shape[s, 1]
        r, c = locs[i, 0], locs[i, 1]
        good = _eval(flat, fvalid, o, H, W, r, c, e)
        for _ in range(iters):
            if not good:
                break
            rx, ry, rz = targets[i, 0] - e[0, 0], targets[i, 1] - e[0, 1], targets[i, 2] - e[0, 2]
            a11 = e[1, 0] * e[1, 0] + e[1, 1] * e[1, 1] + e[1, 2] * e[1, 2]
            a12 = e[1, 0] * e[2, 0] + e[1, 1] * e[2, 1] + e[1, 2] * e[2, 2]
            a22 = e[2, 0] * e[2, 0] + e[2, 1] * e[2, 1] + e[2, 2] * e[2, 2]
            g1 = e[1, 0] * rx + e[1, 1] * ry + e[1, 2] * rz
            g2 = e[2, 0] * rx + e[2, 1] * ry + e[2, 2] * rz
            det = a11 * a22 - a12 * a12
            if det <= 1e-12:
                good = False
                break
            dr, dc = (a22 * g1 - a12 * g2) / det, (a11 * g2 - a12 * g1) / det
            L = math.sqrt(dr * dr + dc * dc)
            if L > 1.0:
                dr, dc = dr / L, dc / L
            r, c = r + dr, c + dc
            if (r - locs[i, 0]) ** 2 + (c - locs[i, 1]) ** 2 > max_disp[i] * max_disp[i]:
                good = False
                break
            good = _eval(flat, fvalid, o, H, W, r, c, e)
            if L < 1e-4:
                break
        if not good:
            continue
        nx = e[1, 1] * e[2, 2] - e[1, 2] * e[2, 1]
        ny = e[1, 2] * e[2, 0] - e[1, 0] * e[2, 2]
        nz = e[1, 0] * e[2, 1] - e[1, 1] * e[2, 0]
        nL = math.sqrt(nx * nx + ny * ny + nz * nz)
        rx, ry, rz = targets[i, 0] - e[0, 0], targets[i, 1] - e[0, 1], targets[i, 2] - e[0, 2]
        if nL > 0:
            dn = (rx * nx + ry * ny + rz * nz) / nL
            rx, ry, rz = rx - dn * nx / nL, ry - dn * ny / nL, rz - dn * nz / nL
        tang[i] = math.sqrt(rx * rx + ry * ry + rz * rz)
        if span[i] > 0:
            e0 = np.empty((3, 3))
            if not _eval(flat, fvalid, o, H, W, locs[i, 0], locs[i, 1], e0):
                continue
            dr, dc = r - locs[i, 0], c - locs[i, 1]
            sc = 1.0
            for _ in range(3):
                ch = math.sqrt((e[0, 0] - e0[0, 0]) ** 2 + (e[0, 1] - e0[0, 1]) ** 2 + (e[0, 2] - e0[0, 2]) ** 2)
                if ch <= 1e-6:
                    break
                sc = sc * min(2.0, max(0.5, span[i] / ch))
                r, c = locs[i, 0] + sc * dr, locs[i, 1] + sc * dc
                good = _eval(flat, fvalid, o, H, W, r, c, e)
                if not good:
                    break
            if not good:
                continue
        ok[i] = True
        out_l[i, 0], out_l[i, 1] = r, c
        pts[i, 0], pts[i, 1], pts[i, 2] = e[0, 0], e[0, 1], e[0, 2]
    return out_l, pts, ok, tang
