r"""Numba kernels of the patch grower: field sampling, per-corner Levenberg–Marquardt, acceptance.

**Field.** ``dist_grad(F, x, y, z)`` samples the chunked uint8 distance field (1/8 voxel units)
trilinearly and returns the distance in voxels and its analytic gradient. Unloaded chunks and
anything outside the volume read as *far* (31.9 voxels), so nothing grows there.

**Corner problem.** A new grid corner ``p`` (3 unknowns, (x, y, z) voxels) minimises
:math:`\tfrac12\sum_i r_i(p)^2` with residuals (``s`` = step in voxels, ``q`` = valid neighbours):

- spacing, 8-neighbourhood: :math:`w_d(\lVert p-q\rVert - s\,\ell)`, :math:`\ell = 1` or :math:`\sqrt2`;
- straightness: :math:`w_s(p - 2q_1 + q_2)/1` for a line ``p, q1, q2`` and :math:`w_s(p - (a+b)/2)`
  when ``p`` sits between ``a`` and ``b``;
- surface: :math:`w_f D(p)` and :math:`w_e D(q + t(p-q))` for ``t`` in {1/4, 1/2, 3/4} along each
  edge to a 4-neighbour.

Jacobians are analytic (:math:`\partial\lVert p-q\rVert/\partial p = (p-q)/\lVert p-q\rVert`,
:math:`\partial D(q+t(p-q))/\partial p = t\nabla D`). LM solves
:math:`(J^TJ + \lambda\,\mathrm{diag}(J^TJ))\delta = -J^Tr` in closed form (3×3).

**Acceptance.** A corner is on the surface if ``D <= accept`` at the corner and at 1-voxel steps
along every edge to a valid 4-neighbour (an edge that crosses the gap between two wraps fails),
no non-neighbouring corner of the patch lies within ``step/2`` (no fold-over), and no other
predicted sheet lies within ``gap`` voxels along the corner's normal (wraps touching, bridges). A spatial hash
of corner positions makes the fold test O(1).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import sheetband as SB
from .field import dist_grad, dist_only


# state of a grid cell
EMPTY, ON_SURFACE, FAILED = 0, 1, 2


# ---------------------------------------------------------------------------------- residuals
@nb.njit(cache=True, inline="always")
def solve3(a, b, c, d, e, f, u, v, w):
    """Solve the symmetric system [[a,b,c],[b,d,e],[c,e,f]] x = (u, v, w) by Cramer's rule."""
    det = a * (d * f - e * e) - b * (b * f - c * e) + c * (b * e - c * d)
    if abs(det) < 1e-18:
        return False, 0.0, 0.0, 0.0
    x = (u * (d * f - e * e) - b * (v * f - e * w) + c * (v * e - d * w)) / det
    y = (a * (v * f - e * w) - u * (b * f - c * e) + c * (b * w - v * c)) / det
    z = (a * (d * w - v * e) - b * (b * w - v * c) + u * (b * e - c * d)) / det
    return True, x, y, z


@nb.njit(cache=True)
def _residuals(pos, state, r, c, p, step, w, pool, slots, shape, J, res):
    """Fill ``res``/``J`` for corner (r, c) at ``p``; returns the number of residuals.

    ``w`` = (w_spacing, w_straight, w_surface, w_edge)."""
    R, C = state.shape
    n = 0
    # spacing to the 8 neighbours
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if dr == 0 and dc == 0:
                continue
            rr, cc = r + dr, c + dc
            if rr < 0 or cc < 0 or rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
                continue
            ex = p[0] - pos[rr, cc, 0]
            ey = p[1] - pos[rr, cc, 1]
            ez = p[2] - pos[rr, cc, 2]
            L = math.sqrt(ex * ex + ey * ey + ez * ez) + 1e-9
            tgt = step * (1.4142135623730951 if dr != 0 and dc != 0 else 1.0)
            res[n] = w[0] * (L - tgt)
            J[n, 0] = w[0] * ex / L
            J[n, 1] = w[0] * ey / L
            J[n, 2] = w[0] * ez / L
            n += 1
    # straightness
    for k in range(4):
        dr = (1, -1, 0, 0)[k]
        dc = (0, 0, 1, -1)[k]
        r1, c1, r2, c2 = r + dr, c + dc, r + 2 * dr, c + 2 * dc
        if 0 <= r2 < R and 0 <= c2 < C and state[r1, c1] == ON_SURFACE and state[r2, c2] == ON_SURFACE:
            for a in range(3):
                res[n] = w[1] * (p[a] - 2 * pos[r1, c1, a] + pos[r2, c2, a])
                J[n, 0] = 0.0
                J[n, 1] = 0.0
                J[n, 2] = 0.0
                J[n, a] = w[1]
                n += 1
    for k in range(2):
        dr = (1, 0)[k]
        dc = (0, 1)[k]
        ra, ca, rb, cb = r + dr, c + dc, r - dr, c - dc
        if 0 <= ra < R and 0 <= ca < C and 0 <= rb < R and 0 <= cb < C and \
                state[ra, ca] == ON_SURFACE and state[rb, cb] == ON_SURFACE:
            for a in range(3):
                res[n] = w[1] * (p[a] - 0.5 * (pos[ra, ca, a] + pos[rb, cb, a]))
                J[n, 0] = 0.0
                J[n, 1] = 0.0
                J[n, 2] = 0.0
                J[n, a] = w[1]
                n += 1
    # surface at the corner
    v, gx, gy, gz = dist_grad(pool, slots, shape, p[0], p[1], p[2])
    res[n] = w[2] * v
    J[n, 0] = w[2] * gx
    J[n, 1] = w[2] * gy
    J[n, 2] = w[2] * gz
    n += 1
    # surface along edges to 4-neighbours
    for k in range(4):
        rr = r + (1, -1, 0, 0)[k]
        cc = c + (0, 0, 1, -1)[k]
        if rr < 0 or cc < 0 or rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
            continue
        for ti in range(3):
            t = 0.25 * (ti + 1)
            qx = pos[rr, cc, 0] + t * (p[0] - pos[rr, cc, 0])
            qy = pos[rr, cc, 1] + t * (p[1] - pos[rr, cc, 1])
            qz = pos[rr, cc, 2] + t * (p[2] - pos[rr, cc, 2])
            v, gx, gy, gz = dist_grad(pool, slots, shape, qx, qy, qz)
            res[n] = w[3] * v
            J[n, 0] = w[3] * t * gx
            J[n, 1] = w[3] * t * gy
            J[n, 2] = w[3] * t * gz
            n += 1
    return n


@nb.njit(cache=True)
def solve_corner(pos, state, r, c, p0, step, w, pool, slots, shape, J, res, iters):
    """Levenberg–Marquardt on one corner from ``p0``; returns (p, cost = ½Σr²)."""
    p = p0.copy()
    n = _residuals(pos, state, r, c, p, step, w, pool, slots, shape, J, res)
    cost = 0.0
    for i in range(n):
        cost += res[i] * res[i]
    cost *= 0.5
    lam = 1e-3
    trial = np.empty(3)
    for _ in range(iters):
        # normal equations
        a00 = a01 = a02 = a11 = a12 = a22 = 0.0
        g0 = g1 = g2 = 0.0
        for i in range(n):
            j0, j1, j2, ri = J[i, 0], J[i, 1], J[i, 2], res[i]
            a00 += j0 * j0
            a01 += j0 * j1
            a02 += j0 * j2
            a11 += j1 * j1
            a12 += j1 * j2
            a22 += j2 * j2
            g0 += j0 * ri
            g1 += j1 * ri
            g2 += j2 * ri
        improved = False
        for _inner in range(8):
            b00 = a00 * (1 + lam) + 1e-9
            b11 = a11 * (1 + lam) + 1e-9
            b22 = a22 * (1 + lam) + 1e-9
            ok, d0, d1, d2 = solve3(b00, a01, a02, b11, a12, b22, -g0, -g1, -g2)
            if not ok:
                lam *= 10
                continue
            # limit the step to half a grid step
            L = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            if L > 0.5 * step:
                s = 0.5 * step / L
                d0 *= s
                d1 *= s
                d2 *= s
            trial[0] = p[0] + d0
            trial[1] = p[1] + d1
            trial[2] = p[2] + d2
            m = _residuals(pos, state, r, c, trial, step, w, pool, slots, shape, J, res)
            tc = 0.0
            for i in range(m):
                tc += res[i] * res[i]
            tc *= 0.5
            if tc < cost:
                p[0], p[1], p[2] = trial[0], trial[1], trial[2]
                cost = tc
                n = m
                lam = max(lam / 3.0, 1e-7)
                improved = True
                break
            lam *= 4.0
        if not improved or L < 1e-4:
            break
    return p, cost


# ---------------------------------------------------------------------------------- spatial hash
@nb.njit(cache=True, inline="always")
def _hkey(ix, iy, iz, mask):
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)
    return h & mask


@nb.njit(cache=True)
def hash_insert(heads, nxt, cell_rc, idx, x, y, z, cell, r, c):
    """Insert corner (r, c) at (x, y, z) into the hash with bucket size ``cell`` voxels."""
    k = _hkey(int(math.floor(x / cell)), int(math.floor(y / cell)), int(math.floor(z / cell)), heads.shape[0] - 1)
    nxt[idx] = heads[k]
    heads[k] = idx
    cell_rc[idx, 0] = r
    cell_rc[idx, 1] = c


@nb.njit(cache=True)
def folds(pos, state, heads, nxt, cell_rc, r, c, p, cell, min_dist, min_grid):
    """True if a valid corner at Chebyshev grid distance ≥ ``min_grid`` lies within ``min_dist`` of p."""
    bx, by, bz = int(math.floor(p[0] / cell)), int(math.floor(p[1] / cell)), int(math.floor(p[2] / cell))
    md2 = min_dist * min_dist
    for ox in range(-1, 2):
        for oy in range(-1, 2):
            for oz in range(-1, 2):
                i = heads[_hkey(bx + ox, by + oy, bz + oz, heads.shape[0] - 1)]
                while i >= 0:
                    rr, cc = cell_rc[i, 0], cell_rc[i, 1]
                    if state[rr, cc] == ON_SURFACE and max(abs(rr - r), abs(cc - c)) >= min_grid:
                        d2 = (pos[rr, cc, 0] - p[0]) ** 2 + (pos[rr, cc, 1] - p[1]) ** 2 + (pos[rr, cc, 2] - p[2]) ** 2
                        if d2 < md2:
                            return True
                    i = nxt[i]
    return False


# ---------------------------------------------------------------------------------- acceptance
@nb.njit(cache=True)
def on_surface(pos, state, r, c, p, accept, pool, slots, shape):
    """Corner and every edge to a valid 4-neighbour within ``accept`` voxels of the surface?"""
    if dist_only(pool, slots, shape, p[0], p[1], p[2]) > accept:
        return False
    R, C = state.shape
    for k in range(4):
        rr = r + (1, -1, 0, 0)[k]
        cc = c + (0, 0, 1, -1)[k]
        if rr < 0 or cc < 0 or rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
            continue
        ex = p[0] - pos[rr, cc, 0]
        ey = p[1] - pos[rr, cc, 1]
        ez = p[2] - pos[rr, cc, 2]
        L = math.sqrt(ex * ex + ey * ey + ez * ez)
        ns = int(L) + 1
        for s in range(1, ns):
            t = s / ns
            if dist_only(pool, slots, shape, pos[rr, cc, 0] + t * ex, pos[rr, cc, 1] + t * ey,
                         pos[rr, cc, 2] + t * ez) > accept:
                return False
    return True


@nb.njit(cache=True)
def corner_normal(pos, state, r, c, p, out):
    """Unit normal at a corner from its valid neighbours' row/column tangents; False if unknown."""
    R, C = state.shape
    tr = np.zeros(3)
    tc = np.zeros(3)
    nr = 0
    nc = 0
    for s in (-1, 1):
        rr = r + s
        if 0 <= rr < R and state[rr, c] == ON_SURFACE:
            for a in range(3):
                tr[a] += s * (pos[rr, c, a] - p[a])
            nr += 1
        cc = c + s
        if 0 <= cc < C and state[r, cc] == ON_SURFACE:
            for a in range(3):
                tc[a] += s * (pos[r, cc, a] - p[a])
            nc += 1
    for s in (-1, 1):  # tangents from diagonal pairs
        for t in (-1, 1):
            rr, cc = r + s, c + t
            if not (0 <= rr < R and 0 <= cc < C) or state[rr, cc] != ON_SURFACE:
                continue
            if nr == 0 and state[r, cc] == ON_SURFACE:
                for a in range(3):
                    tr[a] += s * (pos[rr, cc, a] - pos[r, cc, a])
                nr += 1
            if nc == 0 and state[rr, c] == ON_SURFACE:
                for a in range(3):
                    tc[a] += t * (pos[rr, cc, a] - pos[rr, c, a])
                nc += 1
    if nr == 0 or nc == 0:
        return False
    out[0] = tr[1] * tc[2] - tr[2] * tc[1]
    out[1] = tr[2] * tc[0] - tr[0] * tc[2]
    out[2] = tr[0] * tc[1] - tr[1] * tc[0]
    L = math.sqrt(out[0] ** 2 + out[1] ** 2 + out[2] ** 2)
    if L < 1e-9:
        return False
    for a in range(3):
        out[a] /= L
    return True


# outcome of a fringe corner attempt (index into the grower's statistics); the grower groups them
# into the user-facing reasons (off_surface, near_sheet, fused_band, fold, bounds, not_converged)
(OK, OFF_SURFACE, NEAR_SHEET, FUSED_BAND, FOLD, BOUNDS, NOT_CONVERGED, BRIDGE_TOO_LONG, BRIDGE_BESIDE_SHEET,
 EDGE_SWITCH, EDGE_HOLE, OBLIQUE_SHEET, STRETCHED, NO_NORMAL) = range(14)
N_REASONS = 14


@nb.njit(cache=True)
def neighbour_t_ref(state, tref, r, c):
    """Mean reference band thickness (voxels) of the valid 8-neighbours; 0 if none is known."""
    R, C = state.shape
    s = 0.0
    k = 0
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            rr, cc = r + dr, c + dc
            if (dr or dc) and 0 <= rr < R and 0 <= cc < C and state[rr, cc] == ON_SURFACE and tref[rr, cc] > 0:
                s += tref[rr, cc]
                k += 1
    return s / k if k else 0.0


@nb.njit(cache=True)
def bridge_depth(state, bridge, r, c):
    """1 + the smallest bridge depth among the valid 4-neighbours (0 = a corner on the prediction)."""
    R, C = state.shape
    d = 1 << 20
    for k in range(4):
        rr = r + (1, -1, 0, 0)[k]
        cc = c + (0, 0, 1, -1)[k]
        if 0 <= rr < R and 0 <= cc < C and state[rr, cc] == ON_SURFACE:
            d = min(d, bridge[rr, cc])
    return d + 1


@nb.njit(cache=True)
def neighbour_normal(pos, state, r, c, out):
    """Mean unit normal of the valid 4-neighbours of (r, c), each from its own neighbours — a normal
    that does not depend on the corner's own position (a bridged corner off the sheet would tilt
    :func:`corner_normal`). False if no neighbour has one."""
    R, C = state.shape
    m = np.empty(3)
    out[0] = out[1] = out[2] = 0.0
    k = 0
    for i in range(4):
        rr = r + (1, -1, 0, 0)[i]
        cc = c + (0, 0, 1, -1)[i]
        if rr < 0 or cc < 0 or rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
            continue
        if not corner_normal(pos, state, rr, cc, pos[rr, cc], m):
            continue
        sg = 1.0 if k == 0 or m[0] * out[0] + m[1] * out[1] + m[2] * out[2] >= 0 else -1.0
        for a in range(3):
            out[a] += sg * m[a]
        k += 1
    L = math.sqrt(out[0] ** 2 + out[1] ** 2 + out[2] ** 2)
    if k == 0 or L < 1e-9:
        return False
    for a in range(3):
        out[a] /= L
    return True


@nb.njit(cache=True)
def beside_sheet(pool, slots, shape, p, n, t_ref, step):
    """True if a point ``p`` placed across a hole has another sheet beside it rather than only the
    hole's rim around it: a band within reach along the normal ``n``, or a nearest surface (at any
    distance) that lies more along ``n`` than in the tangent plane — the sheet curving away from a
    straight continuation, or a sheet seen through the hole, rather than the rim."""
    reach = 0.5 * t_ref + 1.0 + SB.in_plane_tolerance(t_ref, step)
    if not SB.clear_of_bands(pool, slots, shape, p, n, reach, t_ref):
        return True
    d, gx, gy, gz = dist_grad(pool, slots, shape, p[0], p[1], p[2])
    g = math.sqrt(gx * gx + gy * gy + gz * gz)
    return g > 1e-6 and abs(gx * n[0] + gy * n[1] + gz * n[2]) > 0.6 * g


@nb.njit(cache=True)
def judge_edges(pos, state, bridge, r, c, p, n, t_ref, step, hole_share, p_on_band, pool, slots, shape):
    """Edges from the valid 4-neighbours of (r, c) to ``p``: ``STRETCHED`` if one is more than 50 %
    longer or shorter than ``step``, ``EDGE_SWITCH`` if one changes band, ``EDGE_HOLE`` if one crosses a
    hole longer than ``hole_share`` of it (:func:`~vcd.kernels.sheetband.edge_follows_band`), else ``OK``."""
    R, C = state.shape
    for k in range(4):
        rr = r + (1, -1, 0, 0)[k]
        cc = c + (0, 0, 1, -1)[k]
        if rr < 0 or cc < 0 or rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
            continue
        L = math.sqrt((p[0] - pos[rr, cc, 0]) ** 2 + (p[1] - pos[rr, cc, 1]) ** 2 + (p[2] - pos[rr, cc, 2]) ** 2)
        if L < 0.5 * step or L > 1.5 * step:
            return STRETCHED
        e = SB.edge_follows_band(pool, slots, shape, pos[rr, cc], p, n, t_ref, hole_share * L, bridge[rr, cc] == 0,
                                 p_on_band)
        if e == SB.EDGE_SWITCH:
            return EDGE_SWITCH
        if e == SB.EDGE_HOLE and hole_share < 1.0:
            return EDGE_HOLE
    return OK


@nb.njit(cache=True)
def judge_bridge(pos, state, tref, bridge, r, c, p, n, step, w, max_bridge, pool, slots, shape, band):
    """A corner in a hole of the prediction, placed by the grid's spacing and straightness alone
    (re-solved from its extrapolated guess with the surface terms of ``w`` off, so that it is not
    pulled towards a sheet seen through the hole; ``p`` is overwritten):
    accepted (``OK``, ``band[4]`` = its bridge depth) when it is at most ``max_bridge`` cells from a
    corner on the prediction, has ≥ 3 valid neighbours, lies clear of every band along its normal
    (a hole, not the space beside or between sheets) and every edge to it follows one band."""
    depth = bridge_depth(state, bridge, r, c)
    if depth > max_bridge or count_valid_nbrs(state, r, c) < 3:
        return BRIDGE_TOO_LONG
    guess = np.empty(3)
    if not _initial_guess(pos, state, r, c, guess):
        return BRIDGE_TOO_LONG
    wg = w.copy()
    wg[2] = 0.0
    wg[3] = 0.0
    J = np.empty((64, 3))
    res = np.empty(64)
    q, _ = solve_corner(pos, state, r, c, guess, step, wg, pool, slots, shape, J, res, 8)
    p[0], p[1], p[2] = q[0], q[1], q[2]
    if not inside(p, shape, 0.5):
        return BOUNDS
    t_ref = max(neighbour_t_ref(state, tref, r, c), 1.0)
    if not neighbour_normal(pos, state, r, c, n):
        return NO_NORMAL
    if not SB.line_inside(p, n, 0.5 * t_ref + 1.0 + SB.in_plane_tolerance(t_ref, step), shape):
        return BOUNDS
    if beside_sheet(pool, slots, shape, p, n, t_ref, step):
        return BRIDGE_BESIDE_SHEET
    code = judge_edges(pos, state, bridge, r, c, p, n, t_ref, step, 1.0, False, pool, slots, shape)
    if code != OK:
        return code
    band[1] = t_ref
    band[4] = depth
    return OK


@nb.njit(cache=True)
def judge_corner(pos, state, tref, bridge, r, c, p, step, w, accept, gap, max_bridge, pool, slots, shape, band):
    """Acceptance of a solved corner ``p`` at (r, c), moving it to its band's centre. Returns a
    refusal code (``OK`` = accept); ``band`` receives (shift, thickness, g+, g-, bridge depth).

    The corner must lie within ``accept`` voxels of the prediction, its band must be a single sheet
    (:func:`~vcd.kernels.sheetband.band_test`), and every edge to a valid 4-neighbour must stay on
    that band (:func:`~vcd.kernels.sheetband.edge_follows_band`; holes up to half an edge are
    crossed). A corner in a larger hole may be bridged (:func:`judge_bridge`)."""
    if not inside(p, shape, 0.5):
        return BOUNDS
    band[4] = 0.0
    n = np.empty(3)
    # a corner with neighbours along one grid direction only (a spike through dropout) takes its
    # neighbours' normal; none known: retried with more neighbours
    if not corner_normal(pos, state, r, c, p, n) and not neighbour_normal(pos, state, r, c, n):
        return NO_NORMAL
    if dist_only(pool, slots, shape, p[0], p[1], p[2]) > accept:
        if gap <= 0 or max_bridge <= 0:
            return OFF_SURFACE
        return judge_bridge(pos, state, tref, bridge, r, c, p, n, step, w, max_bridge, pool, slots, shape, band)
    t_ref = neighbour_t_ref(state, tref, r, c)
    code = SB.band_test(pool, slots, shape, p, n, t_ref, gap, accept, band)
    if code == SB.BAND_NONE:  # near the prediction but not over it: the rim of a hole
        if gap <= 0 or max_bridge <= 0:
            return OFF_SURFACE
        return judge_bridge(pos, state, tref, bridge, r, c, p, n, step, w, max_bridge, pool, slots, shape, band)
    if code == SB.BAND_BLIND:
        return BOUNDS
    if code == SB.BAND_NEAR_SHEET:
        return NEAR_SHEET
    if code == SB.BAND_FUSED:
        return FUSED_BAND
    for a in range(3):
        p[a] += band[0] * n[a]
    if not inside(p, shape, 0.5):
        return BOUNDS
    tr = t_ref if t_ref > 0 else band[1]
    if gap <= 0:  # sheet tests off (VC3D-like): the corner and its edges only need to be near a surface
        if not on_surface(pos, state, r, c, p, accept, pool, slots, shape):
            return OFF_SURFACE
        band[1] = SB.next_t_ref(t_ref, band[1])
        return OK
    code = judge_edges(pos, state, bridge, r, c, p, n, tr, step, 0.5, True, pool, slots, shape)
    if code != OK:
        return code
    if gap > 0 and SB.oblique_sheet(pool, slots, shape, p, n, 0.5 * max(band[1], tr), gap):
        return OBLIQUE_SHEET
    band[1] = SB.next_t_ref(t_ref, band[1])
    return OK


@nb.njit(cache=True)
def inside(p, shape, margin):
    return margin <= p[0] <= shape[2] - 1 - margin and margin <= p[1] <= shape[1] - 1 - margin and \
        margin <= p[2] <= shape[0] - 1 - margin


# ---------------------------------------------------------------------------------- growth
@nb.njit(cache=True)
def _initial_guess(pos, state, r, c, out):
    """Average of line extrapolations ``2q1 - q2`` and parallelograms ``q1 + (k - m)``; False if none."""
    R, C = state.shape
    cnt = 0
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    for k in range(4):
        dr = (1, -1, 0, 0)[k]
        dc = (0, 0, 1, -1)[k]
        r1, c1 = r + dr, c + dc
        if not (0 <= r1 < R and 0 <= c1 < C) or state[r1, c1] != ON_SURFACE:
            continue
        r2, c2 = r1 + dr, c1 + dc
        if 0 <= r2 < R and 0 <= c2 < C and state[r2, c2] == ON_SURFACE:
            for a in range(3):
                out[a] += 2 * pos[r1, c1, a] - pos[r2, c2, a]
            cnt += 1
        # parallelograms: m = q1 + e, k = m - d  (e perpendicular to d)
        for s in range(2):
            er = dc * (1 if s == 0 else -1)
            ec = dr * (1 if s == 0 else -1)
            rm, cm = r1 + er, c1 + ec
            rk, ck = rm - dr, cm - dc
            if 0 <= rm < R and 0 <= cm < C and 0 <= rk < R and 0 <= ck < C and \
                    state[rm, cm] == ON_SURFACE and state[rk, ck] == ON_SURFACE:
                for a in range(3):
                    out[a] += pos[r1, c1, a] + pos[rk, ck, a] - pos[rm, cm, a]
                cnt += 1
    if cnt == 0:
        return False
    for a in range(3):
        out[a] /= cnt
    return True


@nb.njit(cache=True)
def count_valid_nbrs(state, r, c):
    R, C = state.shape
    n = 0
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if (dr != 0 or dc != 0) and 0 <= r + dr < R and 0 <= c + dc < C and state[r + dr, c + dc] == ON_SURFACE:
                n += 1
    return n


@nb.njit(cache=True)
def fringe(state, tried_nbrs):
    """Empty or failed cells with a 4-neighbour on the surface, whose neighbour count grew since the
    last failed attempt. Returns an (N, 2) array of (row, col)."""
    R, C = state.shape
    out = np.empty((R * C, 2), dtype=np.int64)
    n = 0
    for r in range(R):
        for c in range(C):
            if state[r, c] == ON_SURFACE:
                continue
            has4 = False
            for k in range(4):
                rr = r + (1, -1, 0, 0)[k]
                cc = c + (0, 0, 1, -1)[k]
                if 0 <= rr < R and 0 <= cc < C and state[rr, cc] == ON_SURFACE:
                    has4 = True
            if has4 and count_valid_nbrs(state, r, c) > tried_nbrs[r, c]:
                out[n, 0] = r
                out[n, 1] = c
                n += 1
    return out[:n]


@nb.njit(cache=True)
def grow_generation(pos, state, gen, tried_nbrs, tref, bridge, cells, g, step, w, accept, gap, max_bridge, pool,
                    slots, shape, heads, nxt, cell_rc, count, iters, stats, why):
    """Try every fringe cell once; returns the new corner count (index into the hash arrays).
    ``stats[code]`` counts the attempts by outcome (``OK`` or a refusal reason); ``why[r, c]`` keeps
    each cell's last outcome."""
    J = np.empty((64, 3))
    res = np.empty(64)
    guess = np.empty(3)
    band = np.empty(5)
    for i in range(cells.shape[0]):
        r, c = cells[i, 0], cells[i, 1]
        if state[r, c] == ON_SURFACE:
            continue
        nb_count = count_valid_nbrs(state, r, c)
        if not _initial_guess(pos, state, r, c, guess):
            continue
        p, cost = solve_corner(pos, state, r, c, guess, step, w, pool, slots, shape, J, res, iters)
        code = judge_corner(pos, state, tref, bridge, r, c, p, step, w, accept, gap, max_bridge, pool, slots, shape,
                            band)
        if code == OK and folds(pos, state, heads, nxt, cell_rc, r, c, p, step, 0.5 * step, 3):
            code = FOLD
        stats[code] += 1
        why[r, c] = code
        if code == OK:
            pos[r, c, 0], pos[r, c, 1], pos[r, c, 2] = p[0], p[1], p[2]
            state[r, c] = ON_SURFACE
            gen[r, c] = g
            tref[r, c] = band[1]
            bridge[r, c] = int(band[4])
            if count < nxt.shape[0]:
                hash_insert(heads, nxt, cell_rc, count, p[0], p[1], p[2], step, r, c)
                count += 1
        else:
            state[r, c] = FAILED
            tried_nbrs[r, c] = nb_count
    return count


@nb.njit(cache=True)
def refine_recent(pos, state, gen, tref, bridge, g_min, step, w, accept, gap, max_bridge, pool, slots, shape, iters):
    """One Gauss–Seidel sweep re-solving corners added since generation ``g_min`` (neighbours
    fixed); a new position more than 0.25 voxel away is kept only if it passes :func:`judge_corner`."""
    J = np.empty((64, 3))
    res = np.empty(64)
    band = np.empty(5)
    R, C = state.shape
    moved = 0
    for r in range(R):
        for c in range(C):
            if state[r, c] != ON_SURFACE or gen[r, c] < g_min:
                continue
            p0 = pos[r, c].copy()
            state[r, c] = EMPTY  # exclude itself from its own residuals
            p, cost = solve_corner(pos, state, r, c, p0, step, w, pool, slots, shape, J, res, iters)
            mv = math.sqrt((p[0] - p0[0]) ** 2 + (p[1] - p0[1]) ** 2 + (p[2] - p0[2]) ** 2)
            # moves under a quarter voxel are not worth re-judging (a corner cannot change band by that)
            if mv > 0.25 and judge_corner(pos, state, tref, bridge, r, c, p, step, w, accept, gap, max_bridge, pool,
                                          slots, shape, band) == OK:
                pos[r, c, 0], pos[r, c, 1], pos[r, c, 2] = p[0], p[1], p[2]
                tref[r, c] = band[1]
                bridge[r, c] = int(band[4])
                moved += 1
            state[r, c] = ON_SURFACE
    return moved


@nb.njit(cache=True)
def audit_edges(pos, state, tref, bridge, step, pool, slots, shape, bad_r, bad_c):
    """Re-check every edge of the finished grid with :func:`~vcd.kernels.sheetband.edge_follows_band`,
    using normals from the final grid (early corners were judged with few neighbours). Marks
    ``bad_r[r, c]`` (edge (r, c)–(r+1, c)) and ``bad_c[r, c]`` (edge (r, c)–(r, c+1)) where an edge
    changes band, and cuts off bridged corners that lie beside another sheet (:func:`beside_sheet`);
    returns the number of such edges and corners."""
    R, C = state.shape
    n = np.empty(3)
    nb_n = np.empty(3)
    bad = 0
    for r in range(R):
        for c in range(C):
            if state[r, c] != ON_SURFACE or not corner_normal(pos, state, r, c, pos[r, c], n):
                continue
            t_ref = max(tref[r, c], 1.0)
            if bridge[r, c] > 0 and (not neighbour_normal(pos, state, r, c, nb_n) or
                                     beside_sheet(pool, slots, shape, pos[r, c], nb_n, t_ref, step)):
                bad_r[r, c] = True  # cut the corner off from its neighbours
                bad_c[r, c] = True
                if r > 0:
                    bad_r[r - 1, c] = True
                if c > 0:
                    bad_c[r, c - 1] = True
                bad += 1
                continue
            for k in range(2):
                rr, cc = r + (1 - k), c + k
                if rr >= R or cc >= C or state[rr, cc] != ON_SURFACE:
                    continue
                e = SB.edge_follows_band(pool, slots, shape, pos[r, c], pos[rr, cc], n, t_ref, 1e9, bridge[r, c] == 0,
                                         bridge[rr, cc] == 0)
                if e == SB.EDGE_SWITCH:
                    bad += 1
                    if k == 0:
                        bad_r[r, c] = True
                    else:
                        bad_c[r, c] = True
    return bad


@nb.njit(cache=True)
def spanning_bridges(on, bridge):
    """Bridged corners that lie in a run of bridged corners closed at both ends by corners on the
    prediction, along their row or their column — the bridges that cross a hole rather than hang off
    the patch's rim. ``on``: valid corners, ``bridge``: depth (0 = on the prediction); → bool grid."""
    R, C = on.shape
    keep = np.zeros((R, C), np.bool_)
    for axis in range(2):
        n_lines = R if axis == 0 else C
        n_along = C if axis == 0 else R
        for i in range(n_lines):
            j = 0
            while j < n_along:
                r, c = (i, j) if axis == 0 else (j, i)
                if not (on[r, c] and bridge[r, c] > 0):
                    j += 1
                    continue
                k = j
                while k < n_along:
                    rr, cc = (i, k) if axis == 0 else (k, i)
                    if not (on[rr, cc] and bridge[rr, cc] > 0):
                        break
                    k += 1
                closed = j > 0 and k < n_along
                if closed:
                    ra, ca = (i, j - 1) if axis == 0 else (j - 1, i)
                    rb, cb = (i, k) if axis == 0 else (k, i)
                    closed = on[ra, ca] and bridge[ra, ca] == 0 and on[rb, cb] and bridge[rb, cb] == 0
                if closed:
                    for m in range(j, k):
                        rr, cc = (i, m) if axis == 0 else (m, i)
                        keep[rr, cc] = True
                j = k
    return keep


@nb.njit(cache=True)
def audit_merged(pos, state, accept, pool, slots, shape, merged):
    """Mark ``merged[r, c]`` where a finished corner's band is two wraps merged into one
    (:func:`~vcd.kernels.sheetband.merged_by_context`, normal from the final grid) and at least two of
    its 8-neighbours' bands are too (a fused zone spans several cells; a lone reading is dropout).
    A patch changes wrap only through such a band, so the grower cuts the patch there. Returns the
    number of corners marked."""
    R, C = state.shape
    n = np.empty(3)
    raw = np.zeros((R, C), np.bool_)
    for r in range(R):
        for c in range(C):
            if state[r, c] == ON_SURFACE and corner_normal(pos, state, r, c, pos[r, c], n):
                raw[r, c] = SB.merged_by_context(pool, slots, shape, pos[r, c], n, accept)[0]
    cut = 0
    for r in range(R):
        for c in range(C):
            if not raw[r, c]:
                continue
            k = 0
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if (dr or dc) and 0 <= r + dr < R and 0 <= c + dc < C and raw[r + dr, c + dc]:
                        k += 1
            if k >= 2:
                merged[r, c] = True
                cut += 1
    return cut
