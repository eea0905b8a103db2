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


from .points import quad_triangle, quad_valid
from .solve import lstsq2

DEGENERATE = 1e-10  #: a triangle with sin² of its angle at corner a below this is treated as its edges


@nb.njit(cache=True, nogil=True, inline="always")
def _along_dist2(px, py, pz, o, dx, dy, dz, u):
    """Squared distance from point p to the point ``o + u·(dx, dy, dz)``."""
    qx, qy, qz = o[0] + u * dx - px, o[1] + u * dy - py, o[2] + u * dz - pz
    return qx * qx + qy * qy + qz * qz


@nb.njit(cache=True, nogil=True, inline="always")
def _from_corner(px, py, pz, o, abx, aby, abz, acx, acy, acz):
    """``p − o`` (3 values) and its dot products with the edges ``ab`` and ``ac`` of a triangle."""
    qx, qy, qz = px - o[0], py - o[1], pz - o[2]
    return qx, qy, qz, abx * qx + aby * qy + abz * qz, acx * qx + acy * qy + acz * qz


@nb.njit(cache=True, nogil=True)
def _segment_dist2(px, py, pz, a, b):
    """Squared distance from point p to segment (a, b); a zero-length segment is the point a."""
    dx, dy, dz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    L = dx * dx + dy * dy + dz * dz
    u = 0.0
    if L > 0.0:
        u = ((px - a[0]) * dx + (py - a[1]) * dy + (pz - a[2]) * dz) / L
        if not u > 0.0:  # also a NaN ratio
            u = 0.0
        elif u > 1.0:
            u = 1.0
    return _along_dist2(px, py, pz, a, dx, dy, dz, u)


@nb.njit(cache=True, nogil=True)
def _edges_dist2(px, py, pz, a, b, c):
    """Squared distance from p to the three edges of (a, b, c): the exact answer for a degenerate
    (zero-area: repeated or collinear corners) triangle, which is the union of its edges."""
    return min(_segment_dist2(px, py, pz, a, b), _segment_dist2(px, py, pz, a, c),
               _segment_dist2(px, py, pz, b, c))


@nb.njit(cache=True, nogil=True)
def point_triangle_dist2(px, py, pz, a, b, c):
    """Squared distance from point p to triangle (a, b, c) (Ericson, Real-Time Collision Detection §5.1.5).

    Degenerate triangles (repeated corners, collinear corners — e.g. a crushed patch whose grid
    points coincide — or slivers with sin(angle)² below ``DEGENERATE``) are measured as their three
    edges; every division is also guarded, so no input divides by zero."""
    abx, aby, abz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    acx, acy, acz = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    nx, ny, nz = aby * acz - abz * acy, abz * acx - abx * acz, abx * acy - aby * acx
    if not nx * nx + ny * ny + nz * nz > DEGENERATE * (abx * abx + aby * aby + abz * abz) * \
            (acx * acx + acy * acy + acz * acz):
        return _edges_dist2(px, py, pz, a, b, c)  # zero area to rounding: the region tests are unreliable
    apx, apy, apz, d1, d2 = _from_corner(px, py, pz, a, abx, aby, abz, acx, acy, acz)
    if d1 <= 0 and d2 <= 0:
        return apx * apx + apy * apy + apz * apz
    bpx, bpy, bpz, d3, d4 = _from_corner(px, py, pz, b, abx, aby, abz, acx, acy, acz)
    if d3 >= 0 and d4 <= d3:
        return bpx * bpx + bpy * bpy + bpz * bpz
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        if d1 - d3 <= 0:
            return _edges_dist2(px, py, pz, a, b, c)
        return _along_dist2(px, py, pz, a, abx, aby, abz, d1 / (d1 - d3))  # on edge ab
    cpx, cpy, cpz, d5, d6 = _from_corner(px, py, pz, c, abx, aby, abz, acx, acy, acz)
    if d6 >= 0 and d5 <= d6:
        return cpx * cpx + cpy * cpy + cpz * cpz
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        if d2 - d6 <= 0:
            return _edges_dist2(px, py, pz, a, b, c)
        return _along_dist2(px, py, pz, a, acx, acy, acz, d2 / (d2 - d6))  # on edge ac
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        if (d4 - d3) + (d5 - d6) <= 0:
            return _edges_dist2(px, py, pz, a, b, c)
        return _along_dist2(px, py, pz, b, c[0] - b[0], c[1] - b[1], c[2] - b[2],
                            (d4 - d3) / ((d4 - d3) + (d5 - d6)))  # on edge bc
    if not va + vb + vc > 0:  # zero-area (or NaN) triangle
        return _edges_dist2(px, py, pz, a, b, c)
    denom = 1.0 / (va + vb + vc)
    v = vb * denom
    w = vc * denom
    qx = a[0] + abx * v + acx * w - px
    qy = a[1] + aby * v + acy * w - py
    qz = a[2] + abz * v + acz * w - pz
    return qx * qx + qy * qy + qz * qz


@nb.njit(cache=True)
def dist_to_grid(grid, valid, queries, cand_r, cand_c):
    """Exact distance from each query to the quads near its candidate vertices (numba).

    Vertices of quads with an invalid corner are used as isolated points.

    Parameters
    ----------
    grid : numpy.ndarray
        float ``[rows, cols, 3]`` surface grid, ``(x, y, z)`` voxels.
    valid : numpy.ndarray
        bool ``[rows, cols]`` vertex validity.
    queries : numpy.ndarray
        float ``[N, 3]`` points ``(x, y, z)``, voxels.
    cand_r, cand_c : numpy.ndarray
        int ``[N, K]`` candidate vertex rows and columns per query (-1 = none).

    Returns
    -------
    numpy.ndarray
        float64 ``[N]`` distances, voxels (inf without a candidate).
    """
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
                    if not quad_valid(valid, r0, c0):
                        continue
                    for t in range(2):
                        ta, tb, tc = quad_triangle(grid, r0, c0, t)
                        d = point_triangle_dist2(px, py, pz, ta, tb, tc)
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
    # p's plane coordinates; a zero-area triangle (repeated or collinear corners) is its edges
    s, t, ok = lstsq2(e0x, e0y, e0z, e1x, e1y, e1z, px - a[0], py - a[1], pz - a[2], 0.0, DEGENERATE)
    if not ok or s < 0 or t < 0 or s + t > 1:
        # clamp to the best of the three edges
        best = np.inf
        out[0], out[1], out[2] = a[0], a[1], a[2]
        for k in range(3):
            if k == 0:
                ox, oy, oz, dx, dy, dz = a[0], a[1], a[2], e0x, e0y, e0z
            elif k == 1:
                ox, oy, oz, dx, dy, dz = a[0], a[1], a[2], e1x, e1y, e1z
            else:
                ox, oy, oz, dx, dy, dz = b[0], b[1], b[2], c[0] - b[0], c[1] - b[1], c[2] - b[2]
            L = dx * dx + dy * dy + dz * dz
            u = 0.0 if not L > 0.0 else ((px - ox) * dx + (py - oy) * dy + (pz - oz) * dz) / L
            if not u > 0.0:
                u = 0.0
            elif u > 1.0:
                u = 1.0
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
    """:func:`dist_to_grid` with the closest points and where they lie on the grid (same arguments).

    Returns
    -------
    dist : numpy.ndarray
        float64 ``[N]`` distances, voxels (inf without a candidate).
    closest : numpy.ndarray
        float64 ``[N, 3]`` closest surface points ``(x, y, z)``, voxels (-1 without a candidate).
    loc : numpy.ndarray
        float64 ``[N, 2]`` their grid location ``(row, col)``, continuous (-1 without a candidate).
    """
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
                    if not quad_valid(valid, r0, c0):
                        continue
                    for t in range(2):
                        ta, tb, tc = quad_triangle(grid, r0, c0, t)
                        d = _closest_on_triangle(px, py, pz, ta, tb, tc, tmp)
                        if d < best:
                            best = d
                            pts[i, 0], pts[i, 1], pts[i, 2] = tmp[0], tmp[1], tmp[2]
                            loc[i, 0], loc[i, 1] = r0 + 0.5, c0 + 0.5
        dist[i] = math.sqrt(best)
    return dist, pts, loc


# --- sparse uniform-grid hash over a surface's valid vertices (exact "within tol" tests) -------------


@nb.njit(cache=True)
def max_quad_edge(grid, valid):
    """Longest edge (incl. the P01–P10 diagonal) of the triangles of the valid quads; 0 if none."""
    R, C = valid.shape
    best = 0.0
    for r in range(R - 1):
        for c in range(C - 1):
            if not quad_valid(valid, r, c):
                continue
            for e in range(5):
                if e == 0:
                    r1, c1, r2, c2 = r, c, r, c + 1
                elif e == 1:
                    r1, c1, r2, c2 = r, c, r + 1, c
                elif e == 2:
                    r1, c1, r2, c2 = r + 1, c + 1, r + 1, c
                elif e == 3:
                    r1, c1, r2, c2 = r + 1, c + 1, r, c + 1
                else:
                    r1, c1, r2, c2 = r, c + 1, r + 1, c
                d = ((grid[r1, c1, 0] - grid[r2, c2, 0]) ** 2 + (grid[r1, c1, 1] - grid[r2, c2, 1]) ** 2
                     + (grid[r1, c1, 2] - grid[r2, c2, 2]) ** 2)
                if d > best:
                    best = d
    return math.sqrt(best)


@nb.njit(cache=True)
def quad_edges(grid, valid):
    """float64 ``[rows - 1, cols - 1]``: the longest triangle edge (incl. the P01–P10 diagonal) of
    each valid quad, 0 where a corner is invalid."""
    R, C = valid.shape
    out = np.zeros((max(R - 1, 0), max(C - 1, 0)))
    for r in range(R - 1):
        for c in range(C - 1):
            out[r, c] = max_quad_edge(grid[r:r + 2, c:c + 2], valid[r:r + 2, c:c + 2])
    return out


@nb.njit(cache=True)
def vertex_reach(edges, R, C):
    """float64 ``[R, C]``: the longest edge of the valid quads touching each vertex (0 where none),
    from :func:`quad_edges`. A triangle within ``tol`` of q has every vertex v within ``tol +
    vertex_reach[v]`` of q — so a long edge (an outlier point) slows only its own quads."""
    out = np.zeros((R, C))
    for r in range(edges.shape[0]):
        for c in range(edges.shape[1]):
            e = edges[r, c]
            for dr in range(2):
                for dc in range(2):
                    if e > out[r + dr, c + dc]:
                        out[r + dr, c + dc] = e
    return out


@nb.njit(cache=True)
def build_vertex_hash(grid, valid, cell):
    """Bucket the valid vertices into cubic cells of side ``cell``.

    Returns ``(lo[3], dims[3], keys, starts, order)``: ``keys`` are the sorted occupied cell ids
    ``(iz * ny + iy) * nx + ix``, vertices of cell ``keys[j]`` are ``order[starts[j]:starts[j + 1]]``
    (flat indices ``row * C + col``). Memory is O(valid vertices) however large the bbox."""
    R, C = valid.shape
    n = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for r in range(R):
        for c in range(C):
            if valid[r, c]:
                n += 1
                for a in range(3):
                    v = grid[r, c, a]
                    if v < lo[a]:
                        lo[a] = v
                    if v > hi[a]:
                        hi[a] = v
    dims = np.zeros(3, np.int64)
    if n == 0:
        return lo, dims, np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    for a in range(3):
        dims[a] = int((hi[a] - lo[a]) / cell) + 1
    allkeys = np.empty(n, np.int64)
    flat = np.empty(n, np.int64)
    m = 0
    for r in range(R):
        for c in range(C):
            if valid[r, c]:
                ix = min(int((grid[r, c, 0] - lo[0]) / cell), dims[0] - 1)
                iy = min(int((grid[r, c, 1] - lo[1]) / cell), dims[1] - 1)
                iz = min(int((grid[r, c, 2] - lo[2]) / cell), dims[2] - 1)
                allkeys[m] = (iz * dims[1] + iy) * dims[0] + ix
                flat[m] = r * C + c
                m += 1
    srt = np.argsort(allkeys, kind="mergesort")
    order = flat[srt]
    sk = allkeys[srt]
    nu = 1
    for i in range(1, n):
        if sk[i] != sk[i - 1]:
            nu += 1
    keys = np.empty(nu, np.int64)
    starts = np.empty(nu + 1, np.int64)
    keys[0] = sk[0]
    starts[0] = 0
    j = 0
    for i in range(1, n):
        if sk[i] != sk[i - 1]:
            j += 1
            keys[j] = sk[i]
            starts[j] = i
    starts[nu] = n
    return lo, dims, keys, starts, order


@nb.njit(cache=True)
def hash_cell(grid, valid, min_cell):
    """Cell side (voxels) for :func:`build_vertex_hash`: ``min_cell``, enlarged so that no axis of
    the valid vertices' bbox spans more than 2**20 cells (the int64 cell ids cannot overflow, however
    far apart the points are). Larger cells keep a hash search exact (only slower)."""
    R, C = valid.shape
    span = 0.0
    for a in range(3):
        lo, hi = np.inf, -np.inf
        for r in range(R):
            for c in range(C):
                if valid[r, c]:
                    lo = min(lo, grid[r, c, a])
                    hi = max(hi, grid[r, c, a])
        if hi - lo > span:
            span = hi - lo
    return max(min_cell, span / float(1 << 20))


@nb.njit(cache=True, nogil=True)
def _cell_index(v, lo, cell, n):
    """Index of the hash cell holding coordinate ``v`` along an axis of ``n`` cells, clamped to
    [-1, n] in floating point first (so a far or non-finite value never overflows the int)."""
    f = math.floor((v - lo) / cell)
    if not f > -1.0:
        return -1
    if f > n:
        return n
    return int(f)


@nb.njit(cache=True, nogil=True)
def hash_cells_within(px, py, pz, reach, lo, dims, cell):
    """Cell index ranges ``(ix0, ix1, iy0, iy1, iz0, iz1)`` (inclusive, clamped to the hash; empty
    when the point is farther than ``reach`` voxels from it) of the hash cells near point p."""
    ix0 = max(_cell_index(px - reach, lo[0], cell, dims[0]), 0)
    ix1 = min(_cell_index(px + reach, lo[0], cell, dims[0]), dims[0] - 1)
    iy0 = max(_cell_index(py - reach, lo[1], cell, dims[1]), 0)
    iy1 = min(_cell_index(py + reach, lo[1], cell, dims[1]), dims[1] - 1)
    iz0 = max(_cell_index(pz - reach, lo[2], cell, dims[2]), 0)
    iz1 = min(_cell_index(pz + reach, lo[2], cell, dims[2]), dims[2] - 1)
    return ix0, ix1, iy0, iy1, iz0, iz1


@nb.njit(cache=True, nogil=True)
def hash_row_span(px, py, pz, reach, lo, dims, cell, keys, starts, iy, iz, ix0, ix1):
    """``(start, stop)`` into ``order`` of every vertex hashed in the cells of row ``(iy, iz)`` that the
    ball of radius ``reach`` voxels around point p touches, within ``ix0 .. ix1`` (from
    :func:`hash_cells_within`).

    Cell ids run with x fastest, so the cells of one row are consecutive ``keys`` and their vertices one
    run of ``order``, in the same order as visiting the cells one by one: two binary searches per row
    instead of one per cell. The row's x range is where the ball meets it: half-width
    ``sqrt(reach² − dy² − dz²)`` with dy, dz the distances (voxels) from p to the row's cell slab; a
    vertex of a cell outside that range is farther than ``reach`` from p."""
    y0 = lo[1] + iy * cell
    dy = y0 - py if py < y0 else (py - y0 - cell if py > y0 + cell else 0.0)
    z0 = lo[2] + iz * cell
    dz = z0 - pz if pz < z0 else (pz - z0 - cell if pz > z0 + cell else 0.0)
    rem = reach * reach - dy * dy - dz * dz
    if not rem >= 0.0:
        return 0, 0
    hx = math.sqrt(rem)
    a = max(_cell_index(px - hx, lo[0], cell, dims[0]), ix0)
    b = min(_cell_index(px + hx, lo[0], cell, dims[0]), ix1)
    if b < a:
        return 0, 0
    row = (iz * dims[1] + iy) * dims[0]
    return starts[np.searchsorted(keys, row + a)], starts[np.searchsorted(keys, row + b + 1)]


@nb.njit(cache=True, nogil=True)
def _bucket_within(px, py, pz, grid, valid, vreach, order, b0, b1, tol):
    """True if p is within ``tol`` of a quad touching one of the vertices ``order[b0:b1]`` (or of
    such a vertex itself); a vertex farther than ``tol + vreach[vertex]`` is skipped."""
    C = valid.shape[1]
    tol2 = tol * tol
    for m in range(b0, b1):
        v = order[m]
        r, c = v // C, v % C
        d = (grid[r, c, 0] - px) ** 2 + (grid[r, c, 1] - py) ** 2 + (grid[r, c, 2] - pz) ** 2
        if d <= tol2:
            return True
        if d > (tol + vreach[r, c]) ** 2:
            continue
        for dr in range(-1, 1):
            for dc in range(-1, 1):
                r0, c0 = r + dr, c + dc
                if not quad_valid(valid, r0, c0):
                    continue
                for t in range(2):
                    ta, tb, tc = quad_triangle(grid, r0, c0, t)
                    if point_triangle_dist2(px, py, pz, ta, tb, tc) <= tol2:
                        return True
    return False


@nb.njit(cache=True, nogil=True)
def _within(px, py, pz, grid, valid, vreach, lo, dims, cell, keys, starts, order, reach, tol):
    """True if point p lies within ``tol`` voxels of the surface (see :func:`count_within`).

    Visits the hash cells within ``reach`` of p — or, when that box holds more cells than the hash
    has occupied ones (a huge reach: one very long quad edge), the occupied cells inside the box."""
    ix0, ix1, iy0, iy1, iz0, iz1 = hash_cells_within(px, py, pz, reach, lo, dims, cell)
    if ix1 < ix0 or iy1 < iy0 or iz1 < iz0:
        return False
    nbox = float(ix1 - ix0 + 1) * float(iy1 - iy0 + 1) * float(iz1 - iz0 + 1)
    if nbox > keys.shape[0]:
        for j in range(keys.shape[0]):
            k = keys[j]
            ix, iy, iz = k % dims[0], (k // dims[0]) % dims[1], k // (dims[0] * dims[1])
            if ix0 <= ix <= ix1 and iy0 <= iy <= iy1 and iz0 <= iz <= iz1:
                if _bucket_within(px, py, pz, grid, valid, vreach, order, starts[j], starts[j + 1], tol):
                    return True
        return False
    for iz in range(iz0, iz1 + 1):
        for iy in range(iy0, iy1 + 1):
            b0, b1 = hash_row_span(px, py, pz, reach, lo, dims, cell, keys, starts, iy, iz, ix0, ix1)
            if _bucket_within(px, py, pz, grid, valid, vreach, order, b0, b1, tol):
                return True
    return False


@nb.njit(cache=True, nogil=True)
def _near_quads(px, py, pz, grid, quads, tol):
    """True if p is within ``tol`` of one of the (valid) quads whose first corners are ``quads`` (K×2)."""
    tol2 = tol * tol
    for k in range(quads.shape[0]):
        r0, c0 = quads[k, 0], quads[k, 1]
        if point_triangle_dist2(px, py, pz, grid[r0, c0], grid[r0, c0 + 1], grid[r0 + 1, c0]) <= tol2 or \
                point_triangle_dist2(px, py, pz, grid[r0 + 1, c0 + 1], grid[r0 + 1, c0], grid[r0, c0 + 1]) <= tol2:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def count_within(queries, grid, valid, vreach, long_quads, lo, dims, cell, keys, starts, order, max_edge, tol,
                 min_hits):
    """How many queries (N×3) lie within ``tol`` voxels of the surface (its triangles, and valid
    vertices of incomplete quads as points), stopping once ``min_hits`` are found.

    Exact: a triangle within ``tol`` of q has every vertex v within ``tol + vreach[v]`` of q, so the
    quads of every hashed vertex within that reach are tested (``vreach``: :func:`vertex_reach`),
    searching the hash cells within ``tol + max_edge`` — ``max_edge`` bounds the edges of every quad
    except ``long_quads`` (K×2 ``(row, col)`` of their first corner), which are tested one by one."""
    if keys.shape[0] == 0:
        return 0
    hits = 0
    for i in range(queries.shape[0]):
        px, py, pz = queries[i, 0], queries[i, 1], queries[i, 2]
        if _within(px, py, pz, grid, valid, vreach, lo, dims, cell, keys, starts, order, tol + max_edge, tol) or \
                _near_quads(px, py, pz, grid, long_quads, tol):
            hits += 1
            if hits >= min_hits:
                return hits
    return hits
