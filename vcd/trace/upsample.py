"""The trace's output grid: corners upsampled to the patches' resolution, on the patches' own sheet.

:func:`upsample` subdivides every valid quad of the corner grid ``factor`` (= ``step``) times; each
point is read from the patches supporting the whole quad (see its docstring). Points are
``(x, y, z)`` level-0 voxels; grids ``[rows, cols, 3]``, ``-1`` invalid.
"""

from __future__ import annotations

import numpy as np

from .patches import PatchSet
from .state import TraceState


def upsample(st: TraceState, ps: PatchSet, factor: int, snap_th: float) -> np.ndarray:
    """Corners → patch-resolution grid: each valid quad is subdivided ``factor`` times. A point is
    read from the patches that support all four corners, at the bilinear blend of their four
    (row, col) there (mean over up to 4 such patches) — so it lies on those patches' sheet; where no
    patch supports the whole quad, the bilinear point is snapped onto the closest of the quad's
    supporters (:func:`_snap`); a point no patch reaches stays on the Catmull–Rom surface through
    the corners around the quad (:func:`_curved_quad`), not on the chord."""
    v = st.valid
    rows, cols = np.nonzero(v.any(1))[0], np.nonzero(v.any(0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    H, W = (r1 - r0) * factor + 1, (c1 - c0) * factor + 1
    out = np.full((H, W, 3), -1.0)
    t = np.arange(factor + 1) / factor
    uu, ww = np.meshgrid(t, t, indexing="ij")  # ww along columns, uu along rows
    wts = np.stack([((1 - uu) * (1 - ww)).ravel(), ((1 - uu) * ww).ravel(), (uu * (1 - ww)).ravel(),
                    (uu * ww).ravel()], 1)  # [(factor+1)², 4]: weights of corners (r,c), (r,c+1), (r+1,c), (r+1,c+1)
    for r in range(r0, r1):
        for c in range(c0, c1):
            if not (v[r, c] and v[r + 1, c] and v[r, c + 1] and v[r + 1, c + 1]):
                continue
            keys = ((r, c), (r, c + 1), (r + 1, c), (r + 1, c + 1))
            flat = _curved_quad(st, r, c, t)
            snapped = _from_common_patches(st, ps, keys, wts)
            if snapped is None:
                snapped = _snap(st, ps, keys, flat, snap_th)
            rr, cc = (r - r0) * factor, (c - c0) * factor
            out[rr:rr + factor + 1, cc:cc + factor + 1] = snapped.reshape(factor + 1, factor + 1, 3)
    for r in range(r0, r1 + 1):  # isolated valid corners (no full quad) keep their position
        for c in range(c0, c1 + 1):
            if v[r, c]:
                rr, cc = (r - r0) * factor, (c - c0) * factor
                if out[rr, cc, 0] == -1:
                    out[rr, cc] = st.pos[r, c]
    return out.astype(np.float32)


def _catmull_rom(t: np.ndarray) -> np.ndarray:
    """Catmull–Rom weights [len(t), 4] of the points at -1, 0, 1, 2 for parameters ``t`` in [0, 1]."""
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], 1)


def _curved_quad(st: TraceState, r: int, c: int, t: np.ndarray) -> np.ndarray:
    r"""Points of quad (r, c) at the parameters ``t`` (row-major over (u along rows, w along columns),
    as :func:`upsample` orders them) on the bicubic Catmull–Rom surface through the 4×4 corners around
    it, :math:`P(u, w) = \sum_{i,j} B_i(u) B_j(w) G_{ij}`; a missing outer corner is extrapolated
    linearly from the two inside it (both missing on a side: that side is the bilinear chord). The
    sag of a chord across a sheet of radius R is :math:`s^2/8R` (2.3 voxels for 20-voxel cells at
    R = 22); the curve follows the sheet."""
    H, W = st.valid.shape
    G = np.full((4, 4, 3), np.nan)
    for i in range(4):
        for j in range(4):
            rr, cc = r - 1 + i, c - 1 + j
            if 0 <= rr < H and 0 <= cc < W and st.valid[rr, cc]:
                G[i, j] = st.pos[rr, cc]
    for i in (1, 2):  # the quad's own rows: outer columns
        if np.isnan(G[i, 0, 0]):
            G[i, 0] = 2 * G[i, 1] - G[i, 2]
        if np.isnan(G[i, 3, 0]):
            G[i, 3] = 2 * G[i, 2] - G[i, 1]
    for j in range(4):  # outer rows
        if np.isnan(G[0, j, 0]):
            G[0, j] = 2 * G[1, j] - G[2, j]
        if np.isnan(G[3, j, 0]):
            G[3, j] = 2 * G[2, j] - G[1, j]
    B = _catmull_rom(t)
    pts = np.einsum("ui,wj,ijk->uwk", B, B, G)
    return pts.reshape(-1, 3)


def _from_common_patches(st: TraceState, ps: PatchSet, keys, wts, k_max: int = 4):
    """Points (N×3) of a quad read from up to ``k_max`` patches supporting all its corners, or None."""
    common = set(st.locs.get(keys[0], {}))
    for k in keys[1:]:
        common &= set(st.locs.get(k, {}))
    if not common:
        return None
    acc, n = np.zeros((len(wts), 3)), np.zeros(len(wts))
    for t in sorted(common)[:k_max]:
        L = wts @ np.array([st.locs[k][t] for k in keys])
        P, ok = ps.packed.at(np.full(len(L), t), L)
        acc[ok] += P[ok]
        n += ok
    if not n.all():
        return None
    return acc / n[:, None]


def _snap(st: TraceState, ps: PatchSet, keys, flat, snap_th: float):
    """Points ``flat`` (N×3, the bilinear blend of a quad whose corners share no patch) moved onto the
    quad's supporters: each patch supporting a corner walks its own grid from there towards every
    point (so it stays on its own sheet, never a wrap passing nearby); a point takes the closest
    walked point within ``snap_th`` plus a quarter of the quad's diagonal (the sag of a chord across
    a curved sheet) and reached without stopping short; else it stays where it is."""
    starts = {}
    for key in keys:
        for t, loc in st.locs.get(key, {}).items():
            starts.setdefault(int(t), loc)
    if not starts:
        return flat
    diag = max(float(np.linalg.norm(st.pos[keys[0]] - st.pos[keys[3]])),
               float(np.linalg.norm(st.pos[keys[1]] - st.pos[keys[2]])))
    reach = snap_th + 0.25 * diag
    n = len(flat)
    best_d, best_p = np.full(n, np.inf), flat.copy()
    for t, loc in starts.items():
        _, P, ok, tg = ps.packed.walk(np.full(n, t), np.tile(loc, (n, 1)), flat, 1e6)
        d = np.linalg.norm(P - flat, axis=1)
        good = ok & (tg <= snap_th) & (d <= reach) & (d < best_d)
        best_d[good], best_p[good] = d[good], P[good]
    return best_p
