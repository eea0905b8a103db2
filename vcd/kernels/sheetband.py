r"""The sheet-separation test of the patch grower: the prediction's band profile along a normal.

A corner ``p`` (x, y, z voxels) with unit normal ``n`` is judged from the distance field ``D``
(voxels to the nearest predicted-surface voxel) sampled on the line :math:`p + h\,n`,
:math:`h \in [-\text{reach}, \text{reach}]`, every ``H = 0.25`` voxel. A sample is *inside* a band
when :math:`D \le 1/2` (within half a voxel of a surface voxel, so a band ``k`` voxels thick reads
as ``k`` voxels long along its normal). The profile gives

- the **own band** :math:`[h_-, h_+]`: the run of inside samples nearest to ``h = 0`` (the corner
  may sit up to ``accept`` voxels outside its band); its thickness :math:`t = h_+ - h_-`;
- on each side, the **clearance** :math:`g_\pm`: voxels of background between the own band and the
  next band along the line (:math:`\infty` if none within reach).

**Reading through dropout.** A prediction with 30-40 % of the sheet missing in blobs of a few voxels
shows, along one line, a band cut into slivers or missing: read so, the band seems thinner, shifted
or absent, and the grower refused most corners there (edges "changing band" or "crossing holes").
So a sample at height ``h`` is inside when the centre line *or any line of a disc* of radius
``DISC`` (voxels) around it, in the tangent plane (normal ``n``), is inside — the union of
:data:`DISC_N` + 1 parallel lines. One blob hole no longer reads as no band or as a band shift, while
the next wrap, which lies along ``n``, is not brought nearer: a disc in the tangent plane widens a band
only by ``2 DISC tan(tilt)`` where the normal is tilted. The seed's first reading (``t_ref`` unknown)
uses the centre line alone, and the seed quad takes the *thickest* of its four readings as the
reference (dropout only thins a band along a line); a band read thicker than the reference raises it
slowly (``TREF_KEEP_UP``), so that a fused zone met along the front is refused rather than adopted.

Nothing here assumes a thickness. A run of background that splits what is one band (a dropout
blob inside a thick sheet) is recognised by the *locally measured* reference thickness
:math:`t_{ref}` (carried from corner to corner during growth): two runs whose total extent is at
most :math:`1.25\,t_{ref} + 1` voxels are one band. Then, with ``gap`` the param ``sheet_gap``:

- **near another sheet** if :math:`\min(g_+, g_-) < \text{gap}` — a wrap so close that an edge
  (tested at ``accept`` voxels) could cross to it;
- **fused band** if :math:`t > 1.4\,t_{ref} + 1` — two wraps merged into one thick band (a
  sheet that thickens smoothly is followed, because :math:`t_{ref}` adapts as an exponential
  average along the growth front: :math:`t_{ref}' = 0.75\,t_{ref} + 0.25\,t`, or
  :math:`0.9\,t_{ref} + 0.1\,t` where :math:`t > t_{ref}`).

An accepted corner is moved to the centre of its band, :math:`p \leftarrow p + \tfrac12(h_- + h_+)\,n`,
so thick or soft bands give corners on the sheet's mid-surface rather than anywhere inside it.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .field import dist_only

H = 0.25          #: profile sample spacing (voxels)
INSIDE = 0.5      #: D at or below this (voxels) is inside a band
MERGE_SLACK = 1.0  #: voxels of extent allowed beyond 1.25 t_ref when merging split runs
FUSE_RATIO, FUSE_SLACK = 1.4, 1.0
DISC = 1.5        #: radius (voxels) of the disc of parallel lines a profile is read from
DISC_N = 6        #: lines on the disc's rim (plus its centre)
TREF_KEEP = 0.75  #: weight of the neighbours' reference thickness in the new corner's (band thinner)
TREF_KEEP_UP = 0.9  #: the same where the corner's band is thicker (a fused zone must not raise it fast)

# outcome codes (shared with the grower's refusal statistics)
BAND_OK, BAND_NEAR_SHEET, BAND_FUSED, BAND_NONE, BAND_BLIND = 0, 1, 2, 3, 4


@nb.njit(cache=True)
def line_inside(p, n, reach, shape):
    """True if both ends of the segment ``p ± reach·n`` lie inside the volume (``shape`` = (z, y, x)):
    a profile that leaves the volume cannot see the next sheet on that side."""
    for sg in (-1.0, 1.0):
        x, y, z = p[0] + sg * reach * n[0], p[1] + sg * reach * n[1], p[2] + sg * reach * n[2]
        if not (0.0 <= x <= shape[2] - 1 and 0.0 <= y <= shape[1] - 1 and 0.0 <= z <= shape[0] - 1):
            return False
    return True


@nb.njit(cache=True)
def disc_radius(t_ref):
    """Radius (voxels) of the disc of parallel lines a profile is read from: :data:`DISC` once the
    band's reference thickness is known (``t_ref > 0``), 0 (the single line) for the seed's first
    reading, whose thickness must not be widened by the disc (see the module docstring)."""
    if t_ref <= 0:
        return 0.0
    return DISC


@nb.njit(cache=True)
def _inside(pool, slots, shape, p, n, h, rho):
    """Is ``p + h n`` inside a band, read on the disc of radius ``rho`` (voxels) in the tangent plane:
    inside if the centre or any of the :data:`DISC_N` rim points is (one line if ``rho`` is 0)."""
    x, y, z = p[0] + h * n[0], p[1] + h * n[1], p[2] + h * n[2]
    if dist_only(pool, slots, shape, x, y, z) <= INSIDE:
        return True
    if rho <= 0:
        return False
    # a tangent basis (u, v) of n
    if abs(n[0]) < 0.8:
        ux, uy, uz = 0.0, n[2], -n[1]
    else:
        ux, uy, uz = -n[2], 0.0, n[0]
    L = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / L, uy / L, uz / L
    vx, vy, vz = n[1] * uz - n[2] * uy, n[2] * ux - n[0] * uz, n[0] * uy - n[1] * ux
    for k in range(DISC_N):
        a = 2.0 * math.pi * k / DISC_N
        ca, sa = rho * math.cos(a), rho * math.sin(a)
        if dist_only(pool, slots, shape, x + ca * ux + sa * vx, y + ca * uy + sa * vy, z + ca * uz + sa * vz) <= INSIDE:
            return True
    return False


@nb.njit(cache=True)
def _run_end(pool, slots, shape, p, n, h, sg, want_inside, limit, rho):
    """Walk from ``h`` in direction ``sg`` while the inside-state equals ``want_inside``; return the
    last ``h`` with that state (or ``limit`` reached: returns ±limit)."""
    while abs(h + sg * H) <= limit:
        if _inside(pool, slots, shape, p, n, h + sg * H, rho) != want_inside:
            return h
        h += sg * H
    return sg * limit


@nb.njit(cache=True)
def own_band(pool, slots, shape, p, n, search, rho):
    """Inside run nearest to ``h = 0`` within ``±search`` voxels → (found, h_lo, h_hi)."""
    h = 0.0
    while h <= search + 1e-9:
        for sg in (1.0, -1.0):
            if _inside(pool, slots, shape, p, n, sg * h, rho):
                lo = _run_end(pool, slots, shape, p, n, sg * h, -1.0, True, 64.0, rho)
                hi = _run_end(pool, slots, shape, p, n, sg * h, 1.0, True, 64.0, rho)
                return True, lo, hi
        h += H
    return False, 0.0, 0.0


@nb.njit(cache=True)
def side_clearance(pool, slots, shape, p, n, edge, sg, lo, hi, t_ref, reach, rho):
    """Background voxels from the own band's edge (``edge`` = h_hi or h_lo, going ``sg``) to the next
    band, merging runs that fit in one band of thickness ``t_ref``. Returns (clearance, lo, hi) with
    the own band possibly extended by merged runs; clearance = inf if no band within ``reach``."""
    while True:
        gap_end = _run_end(pool, slots, shape, p, n, edge + sg * H, sg, False, reach, rho)
        if abs(gap_end) >= reach - 1e-9:
            return math.inf, lo, hi
        start = gap_end + sg * H  # first inside sample of the next run
        stop = _run_end(pool, slots, shape, p, n, start, sg, True, reach, rho)
        new_lo, new_hi = min(lo, start, stop), max(hi, start, stop)
        if new_hi - new_lo <= 1.25 * t_ref + MERGE_SLACK:
            lo, hi, edge = new_lo, new_hi, stop   # a hole inside the own band: one band
            continue
        return abs(start - edge) - H, lo, hi


@nb.njit(cache=True)
def band_test(pool, slots, shape, p, n, t_ref, gap, accept, out):
    """Sheet-separation test of corner ``p`` with normal ``n`` (see module docstring).

    ``t_ref``: reference band thickness (voxels) from the neighbouring corners, or ≤ 0 if unknown (the
    seed). Writes ``out = (shift along n to the band centre, own thickness, clearance +, clearance -)``
    and returns a ``BAND_*`` code (``BAND_BLIND``: the profile leaves the volume, nothing can be judged). ``gap <= 0`` disables the separation tests (centring still runs)."""
    rho = disc_radius(t_ref)
    found, lo, hi = own_band(pool, slots, shape, p, n, accept + 0.5, rho)
    if not found:
        return BAND_NONE
    tr = t_ref if t_ref > 0 else hi - lo
    reach = max(gap, 0.0) + 1.25 * tr + MERGE_SLACK + 2.0
    if gap > 0 and not line_inside(p, n, reach + 0.5 * (hi - lo), shape):
        return BAND_BLIND
    cp, lo, hi = side_clearance(pool, slots, shape, p, n, hi, 1.0, lo, hi, tr, reach, rho)
    cm, lo, hi = side_clearance(pool, slots, shape, p, n, lo, -1.0, lo, hi, tr, reach, rho)
    out[0] = 0.5 * (lo + hi)
    out[1] = hi - lo
    out[2] = cp
    out[3] = cm
    if gap <= 0:
        return BAND_OK
    if min(cp, cm) < gap:
        return BAND_NEAR_SHEET
    if t_ref > 0 and hi - lo > FUSE_RATIO * t_ref + FUSE_SLACK:
        return BAND_FUSED
    return BAND_OK


@nb.njit(cache=True)
def oblique_sheet(pool, slots, shape, p, n, half_band, gap):
    """Another sheet off the normal: probes along the 26 grid directions at 2..(half_band + gap)
    voxels; a probe inside a band (D < 0.35) counts only if its height above the tangent plane clears
    the own band (``half_band + 1``) and its curvature (s²/2R with R ≥ 10 voxels)."""
    reach = half_band + gap
    for k in range(26):
        kk = k if k < 13 else k + 1
        dx, dy, dz = kk % 3 - 1.0, (kk // 3) % 3 - 1.0, kk // 9 - 1.0
        L = math.sqrt(dx * dx + dy * dy + dz * dz)
        dx, dy, dz = dx / L, dy / L, dz / L
        off = abs(dx * n[0] + dy * n[1] + dz * n[2])
        if off < 0.5:
            continue
        s = 2.0
        while s <= reach / off + 1e-9:
            if s * off >= half_band + 1.0 + 0.05 * s * s and \
                    dist_only(pool, slots, shape, p[0] + s * dx, p[1] + s * dy, p[2] + s * dz) < 0.35:
                return True
            s += 0.5
    return False


@nb.njit(cache=True)
def next_t_ref(t_ref, t):
    """Reference thickness carried to a new corner (exponential average along the growth front)."""
    if t_ref <= 0:
        return t
    keep = TREF_KEEP_UP if t > t_ref else TREF_KEEP
    return keep * t_ref + (1.0 - keep) * t


@nb.njit(cache=True)
def band_interval(pool, slots, shape, s, n, search, t_ref):
    """(found, h_lo, h_hi): the extent along ``n`` (voxels from point ``s``) of the band nearest to
    ``s`` within ``±search``, runs that fit in one band of thickness ``t_ref`` merged; not found in a
    hole."""
    rho = disc_radius(t_ref)
    found, lo, hi = own_band(pool, slots, shape, s, n, search, rho)
    if not found:
        return False, 0.0, 0.0
    reach = 1.25 * t_ref + MERGE_SLACK + 1.0
    _, lo, hi = side_clearance(pool, slots, shape, s, n, hi, 1.0, lo, hi, t_ref, reach, rho)
    _, lo, hi = side_clearance(pool, slots, shape, s, n, lo, -1.0, lo, hi, t_ref, reach, rho)
    return True, lo, hi


EDGE_OK, EDGE_SWITCH, EDGE_HOLE = 0, 1, 2


@nb.njit(cache=True)
def in_plane_tolerance(t_ref, L):
    """Voxels a corner may lie off the tangent plane of a bridged neighbour ``L`` voxels away (its band's
    half thickness, 1 voxel, and the sagitta of a sheet curving with radius ≥ 2L)."""
    return 0.5 * t_ref + 1.0 + 0.25 * L


@nb.njit(cache=True)
def edge_follows_band(pool, slots, shape, q, p, n, t_ref, max_hole, q_on_band, p_on_band=True):
    r"""``EDGE_OK`` if the straight edge ``q → p`` (both centred in their bands) stays on one band,
    ``EDGE_SWITCH`` if it changes band, ``EDGE_HOLE`` if it crosses too long a hole.

    The band is *tracked* along the edge, every voxel: its centre offset :math:`c` along ``n``
    (starting at 0, the centre of ``q``'s band) is updated from the band found within
    :math:`\pm j` of :math:`c`, :math:`j = \max(1, t_{ref}/2)`. A sample where no band lies there
    (a dropout blob, or a sliver of band left by one) is skipped — at most ``max_hole`` voxels in a
    row. At ``p`` the tracked band must be ``p``'s own: :math:`|c| \le j`. Stepping onto a
    neighbouring wrap leaves the tracked band one wrap spacing away from ``p``, whatever the gap
    between the bands. The tracked band may not thicken into a fused band either
    (:math:`t > 1.4\,t_{ref} + 1`, where two wraps merge and the tracking could slide across).
    When ``q`` is a bridged corner (in a hole, ``q_on_band`` False) tracking starts at the first
    band met near the edge; when either end is bridged, ``p`` must also lie within
    :func:`in_plane_tolerance` of ``q`` along ``n`` (a corner seen through a hole on the next wrap
    is not a continuation)."""
    ex, ey, ez = p[0] - q[0], p[1] - q[1], p[2] - q[2]
    L = math.sqrt(ex * ex + ey * ey + ez * ez)
    if not (q_on_band and p_on_band) and abs(ex * n[0] + ey * n[1] + ez * n[2]) > in_plane_tolerance(t_ref, L):
        return EDGE_SWITCH
    ns = int(L) + 1
    tr = max(t_ref, 1.0)
    jump = max(1.0, 0.5 * tr)
    fused = FUSE_RATIO * tr + FUSE_SLACK
    tracked = q_on_band
    c = 0.0
    w_last = tr
    miss = 0.0
    s = np.empty(3)
    for k in range(1, ns + 1):
        t = k / ns
        if tracked:
            s[0], s[1], s[2] = q[0] + t * ex + c * n[0], q[1] + t * ey + c * n[1], q[2] + t * ez + c * n[2]
            found, lo, hi = band_interval(pool, slots, shape, s, n, jump, tr)
        else:
            s[0], s[1], s[2] = q[0] + t * ex, q[1] + t * ey, q[2] + t * ez
            found, lo, hi = band_interval(pool, slots, shape, s, n, 0.5 * tr + 1.5, tr)
        if not found or (tracked and abs(0.5 * (lo + hi)) > jump):
            miss += L / ns
            if miss > max_hole and (tracked or k == ns):
                return EDGE_HOLE
            continue
        if hi - lo > fused:
            return EDGE_SWITCH
        c += 0.5 * (lo + hi)
        w_last = hi - lo
        miss = 0.0
        tracked = True
    if tracked and abs(c) > max(jump, 0.5 * (w_last + tr) - 0.5):
        return EDGE_SWITCH
    return EDGE_OK


@nb.njit(cache=True)
def clear_of_bands(pool, slots, shape, p, n, reach, t_ref):
    """True if no band lies within ``±reach`` voxels of ``p`` along ``n`` (a point in a hole of its
    sheet, not beside or between sheets); read on the disc of :func:`disc_radius` (``t_ref``)."""
    rho = disc_radius(t_ref)
    h = 0.0
    while h <= reach:
        if _inside(pool, slots, shape, p, n, h, rho) or _inside(pool, slots, shape, p, n, -h, rho):
            return False
        h += H
    return True


#: a band is two wraps merged (by context) when it is thicker than this × the thicker of the bands
#: next to it along the normal, + the slack (voxels) — see :func:`merged_by_context`
MERGED_RATIO, MERGED_SLACK = 1.5, 0.5
SLIVER = 0.6  #: a neighbour band under this share of the other neighbour's thickness is a dropout sliver
NEIGHBOUR_REACH = 30.0  #: voxels along the normal searched for the neighbouring wraps' bands


@nb.njit(cache=True)
def run_length(pool, slots, shape, p, n, edge, sg, reach, rho):
    """Thickness (voxels) of the first band met beyond ``edge`` going ``sg`` along ``n`` from ``p``
    (within ``reach`` voxels of ``p``), 0 if none — read on the disc of radius ``rho``."""
    gap_end = _run_end(pool, slots, shape, p, n, edge + sg * H, sg, False, reach, rho)
    if abs(gap_end) >= reach - 1e-9:
        return 0.0
    start = gap_end + sg * H
    stop = _run_end(pool, slots, shape, p, n, start, sg, True, reach + 8.0, rho)
    return abs(stop - start) + H


@nb.njit(cache=True)
def merged_by_context(pool, slots, shape, p, n, accept):
    """Is the band at ``p`` (normal ``n``) two wraps merged into one — a fused zone whose bands touch,
    which no gap along the normal reveals? Judged by context: the wraps' bands next to it along the
    normal (within :data:`NEIGHBOUR_REACH` voxels, each side) are single sheets of the same scroll, so a
    band more than :data:`MERGED_RATIO` × the thicker of them (+ :data:`MERGED_SLACK`) is two sheets.
    Read on the disc of :data:`DISC` (dropout slivers do not thin a neighbour). → (merged, own
    thickness, neighbour thickness); False when no neighbour band is seen (nothing to compare)."""
    rho = DISC
    found, lo, hi = own_band(pool, slots, shape, p, n, accept + 0.5, rho)
    if not found:
        return False, 0.0, 0.0
    own = hi - lo + H
    tp = run_length(pool, slots, shape, p, n, hi, 1.0, NEIGHBOUR_REACH, rho)
    tm = run_length(pool, slots, shape, p, n, lo, -1.0, NEIGHBOUR_REACH, rho)
    ref = max(tp, tm)
    if min(tp, tm) >= SLIVER * ref:  # the thinner, unless it is a sliver a dropout blob left
        ref = min(tp, tm)
    if ref <= 0:
        return False, own, 0.0
    return own > MERGED_RATIO * ref + MERGED_SLACK, own, ref
