r"""Point queries against many quad-grid surfaces at once (the tracer's inner loop).

All surfaces are packed into one array: surface ``s`` occupies rows ``off[s] … off[s] + H_s·W_s``
of ``flat`` (float64 [N, 3], (x, y, z) voxels, row-major over its grid) and ``fvalid``. A query
is answered from one sparse uniform hash over all valid vertices: every vertex within
``d_max + max_edge`` voxels of the query whose surface is wanted is examined. For each such vertex
the kernel tests the vertex and both
triangles ``(P00, P01, P10)``, ``(P11, P10, P01)`` of the (up to 4) valid quads touching it, and
keeps the minimum per (query, surface column).

Exactness: a point of a triangle is at most the triangle's longest edge from each of its vertices, so
the closest point of a surface within ``d_max`` of the query always lies on a quad whose vertices are
all within ``d_max + max_edge`` — the reach above is therefore safe.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .pointsearch import _closest_on_triangle, hash_bucket, hash_cells_within


@nb.njit(cache=True)
def closest_per_surface(flat, fvalid, off, shape, gsurf, lo, dims, cell, keys, starts, order, queries, colmap,
                        ncol, reach, max_edge, enough):
    """Closest point of each wanted surface to each query.

    ``queries`` float64 [Q, 3]; ``colmap[s]`` = output column of surface ``s`` (-1: not wanted); the
    vertex hash ``(lo, dims, cell, keys, starts, order)`` buckets the packed valid vertices (global
    indices into ``flat``), ``gsurf[g]`` = surface of packed vertex ``g``. Vertices farther than
    ``reach`` voxels are not examined; nor are the quads of a vertex farther than the best distance so
    far + ``max_edge`` (they cannot be closer), nor anything more for a pair already within ``enough``
    voxels (0: exact closest points). Returns ``dist`` float64 [Q, ncol] (inf where nothing was in
    reach) and ``pts`` float64 [Q, ncol, 3] (voxels)."""
    nq = queries.shape[0]
    dist2 = np.full((nq, ncol), np.inf)
    pts = np.full((nq, ncol, 3), -1.0)
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
                for ix in range(ix0, ix1 + 1):
                    b0, b1 = hash_bucket(keys, starts, dims, ix, iy, iz)
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
                        if d < best:
                            dist2[i, j] = d
                            pts[i, j, 0], pts[i, j, 1], pts[i, j, 2] = flat[g, 0], flat[g, 1], flat[g, 2]
                        elif d > (math.sqrt(best) + max_edge) ** 2:
                            continue
                        H, W = shape[s, 0], shape[s, 1]
                        r, cc = (g - off[s]) // W, (g - off[s]) % W
                        for dr in range(-1, 1):
                            for dc in range(-1, 1):
                                r0, c0 = r + dr, cc + dc
                                if r0 < 0 or c0 < 0 or r0 + 1 >= H or c0 + 1 >= W:
                                    continue
                                g00 = off[s] + r0 * W + c0
                                g01, g10, g11 = g00 + 1, g00 + W, g00 + W + 1
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
    return np.sqrt(dist2), pts


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

    def closest(self, queries: np.ndarray, surfaces, d_max: float, enough: float = 0.0):
        """``(dist [Q, S], pts [Q, S, 3])`` from each (x, y, z) query (Q×3) to each of ``surfaces``
        (S indices); exact for distances ≤ ``d_max`` voxels (a larger value or inf beyond). With
        ``enough`` > 0 a pair stops at the first point within ``enough`` (for "within?" tests)."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float64).reshape(-1, 3))
        surfaces = np.asarray(surfaces, np.int64)
        lo, dims, keys, starts, order = self.hash
        self._colmap[surfaces] = np.arange(len(surfaces))
        try:
            return closest_per_surface(self.flat, self.fvalid, self.off, self.shape, self.gsurf, lo, dims, self.CELL,
                                       keys, starts, order, queries, self._colmap, len(surfaces),
                                       d_max + self.max_edge, self.max_edge, enough)
        finally:
            self._colmap[surfaces] = -1
