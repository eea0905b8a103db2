r"""Bridging a seam by the neighbouring wraps.

Where the traced sheet's own patches end — its prediction is missing over the whole height, or two
wraps fuse — a seam separates two patch groups of one sheet. A circle through the last traced
corners is a poor guide across it on a crushed scroll: the sheet's curvature changes within a few
cells, and the circle drifts along the normal by about the wrap spacing. The sheets *beside* it
usually go on across the seam, and the sheets of a scroll stay roughly parallel, so they are the
better guide.

**Guides.** At the last traced corner :math:`p_1` ((x, y, z) voxels) with unit normal :math:`n_1`,
a guide is the group of patches (not supporting :math:`p_1`) that the normal line
:math:`p_1 + h\,n_1` pierces first on one side, :math:`2\,th \le |h| \le` ``reach``
(``th`` = ``same_surface_th``; pierced = passes within half a voxel), at points :math:`g_0` within
``th`` of one another; its signed offset is :math:`\delta = (g_0 - p_1)\cdot n_1`. A guide on each
side (inwards, outwards) is needed: one neighbour alone cannot tell a wrap spacing that shrinks
across the seam from a continuation that drifts onto the next wrap. The two offsets may differ by at
most ``MAX_SIDE_RATIO`` (2×): a guide much further off than the other is not the next wrap but one
beyond a wrap without patches there, and the interpolation's error grows with the guides' span.

**Transport.** One trace cell (``S`` voxels) at a time in the trace's direction, each guide's
patches walk their own grids (:meth:`~vcd.kernels.multisurface.PackedSurfaces.walk`, so they stay on
their own sheet) to the guide's point :math:`g_k^\pm` beside the predicted continuation, and the
continuation keeps its place between its neighbours (:math:`\delta_- < 0 < \delta_+`):

.. math:: q_k = g_k^- + f\,(g_k^+ - g_k^-), \qquad f = \frac{-\delta_-}{\delta_+ - \delta_-},

so a wrap spacing that changes across the seam is followed. Whether :math:`q_k` is accepted is the
tracer's business (patches on the far side must agree with it); this module only proposes.

Units: voxels; points (x, y, z); patch locations fractional (row, col) of the patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.multisurface import PackedSurfaces


MAX_SIDE_RATIO = 2.0  #: largest ratio of the two guides' offsets (see the module docstring)


@dataclass
class Guide:
    """One guide sheet: its patches (indices into the packed surfaces), their (row, col) at the
    current guide point, and the signed offset ``delta`` (voxels along ``n1``) from the trace to it."""
    ids: np.ndarray
    locs: np.ndarray
    delta: float


def find_guides(packed: PackedSurfaces, candidates: np.ndarray, p1: np.ndarray, n1: np.ndarray,
                th: float, reach: float) -> list[Guide]:
    """The nearest guide on each side of ``p1`` along ``n1`` among the patch indices ``candidates``
    (see the module docstring): both, or none if a side has none or one side's offset is more than
    ``MAX_SIDE_RATIO`` times the other's (a wrap between without patches there)."""
    if len(candidates) == 0:
        return []
    candidates = np.asarray(candidates, np.int64)
    h = np.arange(2 * th, reach + 1e-9, 0.5)
    guides = []
    for side in (-1.0, 1.0):
        line = p1[None] + side * h[:, None] * n1[None]
        d, P, L = packed.closest_locs(line, candidates, 1.0)
        hit = d <= 0.5          # [h, patch]: the normal line pierces the patch here
        if not hit.any():
            continue
        first = np.where(hit.any(0), hit.argmax(0), len(h))   # first crossing of each patch
        j0 = int(np.argmin(first))
        ref = P[first[j0], j0]
        grp = [j for j in range(len(candidates)) if first[j] < len(h)
               and np.linalg.norm(P[first[j], j] - ref) <= th]
        locs = np.array([L[first[j], j] for j in grp])
        delta = float(np.mean([(P[first[j], j] - p1) @ n1 for j in grp]))
        guides.append(Guide(candidates[grp], locs, delta))
    if len(guides) < 2:
        return []
    a, b = sorted(abs(g.delta) for g in guides)
    return guides if b <= MAX_SIDE_RATIO * a else []


def _walk_guide(packed: PackedSurfaces, g: Guide, target: np.ndarray, max_disp: np.ndarray):
    """Each patch of guide ``g`` walks its own grid to the point nearest ``target`` ((x, y, z)
    voxels). Keeps in ``g`` the patches that stayed on valid parts of their grid; returns their mean
    point, or None if none did."""
    L, P, ok, _ = packed.walk(g.ids, g.locs, np.tile(target, (len(g.ids), 1)), max_disp)
    if not ok.any():
        return None
    g.ids, g.locs = g.ids[ok], L[ok]
    return P[ok].mean(0)


def transport(packed: PackedSurfaces, guides: list[Guide], p1: np.ndarray, p2: np.ndarray, n1: np.ndarray,
              step: float, n: int, kcell: np.ndarray, keep_z: bool) -> list[np.ndarray]:
    r"""Continuation points ``q_1 … q_n`` of the trace line ``p2 → p1`` (cells of ``step`` voxels)
    carried by the two ``guides`` (module docstring); shorter where a guide ends. Each step predicts
    :math:`q' = q_{k-1} + \text{step}\,u`, walks each guide to its point beside :math:`q'`
    (:math:`q' + \delta_i n`), and places :math:`q_k` at the trace's fraction between the two; the
    normal :math:`n` is then the direction from the inner guide point to the outer one. ``kcell``:
    one trace cell in each patch's grid units (indexed by patch); ``keep_z``: the line is a trace row
    (constant z)."""
    lo, hi = sorted((Guide(g.ids.copy(), g.locs.copy(), g.delta) for g in guides), key=lambda g: g.delta)
    f = -lo.delta / (hi.delta - lo.delta)
    q, nrm = p1.astype(float), n1.astype(float)
    u = _unit(p1 - p2, keep_z)
    out = []
    for _ in range(n):
        pred = q + step * u
        pts = []
        for g in (lo, hi):
            p = _walk_guide(packed, g, pred + g.delta * nrm, 2 * kcell[g.ids] + 1)
            if p is None:
                return out
            pts.append(p)
        q_new = pts[0] + f * (pts[1] - pts[0])
        nrm = _unit(pts[1] - pts[0], False)
        lo.delta, hi.delta = float((pts[0] - q_new) @ nrm), float((pts[1] - q_new) @ nrm)
        u = _unit(q_new - q, keep_z)
        q = q_new
        out.append(q.copy())
    return out


def _unit(v: np.ndarray, flat_z: bool) -> np.ndarray:
    v = np.array(v, float)
    if flat_z:
        v[2] = 0.0
    return v / max(float(np.linalg.norm(v)), 1e-12)
