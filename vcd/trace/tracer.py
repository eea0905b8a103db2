r"""Grow one large trace by consensus of overlapping patches.

The trace is a quad grid of *cells* ``S = step × src_step`` voxels apart; rows run along the
seed patch's direction closest to z, columns grow towards +u (−u with ``flip_x``).

**One generation.** For every *fringe* cell (empty, next to a valid corner, inside the active
window of the last ``window_cells`` columns — so the work per generation is proportional to the
window, not to the trace):

1. *guess* its position by extrapolating valid neighbours (``2q1 − q2`` lines, parallelograms),
   with z set to the row's z level (rows are z levels: VC3D's z-location prior);
2. *candidates*: the patches supporting the 3×3 neighbourhood plus their overlap-graph neighbours;
3. *proposals*: each candidate's closest point to the guess (if within ``0.8 S``);
4. *consensus*: a candidate *agrees* with a proposal if it passes within ``same_surface_th``
   voxels; support :math:`= \sum_{t \in agree} (1 + n_t)` where :math:`n_t` counts the neighbouring
   corners ``t`` already supports (a patch that carried the trace so far weighs more);
5. accept the best proposal if support ≥ the threshold *T*, at least ``min_supporters`` distinct
   patches agree, spacing to its 4-neighbours is within [0.6 S, 1.4 S] and it does not fold onto
   the trace; the corner becomes the mean of the agreeing patches' closest points. An
   ``approved`` proposer anchored on ≥ 2 neighbours is accepted without consensus.

**Threshold schedule** (VC3D): *T* starts at ``inlier_base_threshold``; a generation that accepts
nothing lowers it towards ``consensus_default_th`` and then ``consensus_limit_th`` (only when the
trace would otherwise end); any progress resets it. **Windowed optimisation**: with
``global_steps_per_window`` > 0, after every generation that added corners and once when growth
stalls (before the threshold drops), the corners of the last 12 columns are regularised by least
squares (8-neighbour spacing, straightness, z prior, point-to-plane tie to the sheet; :mod:`vcd.kernels.gridopt`, weights ``dist_loss_3d_w``, ``straight_weight_3D``,
``z_loc_loss_w``) and put back onto their supporting patches, that many times. **Output**: corners upsampled
``step`` times and snapped onto the supporting patches, i.e. the patches' own grid resolution.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..kernels.gridopt import regularise_window
from . import qa
from .params import TraceParams
from .patches import PatchSet

NBR4 = ((1, 0), (-1, 0), (0, 1), (0, -1))


@dataclass
class TraceState:
    pos: np.ndarray                 #: float64 [H, W, 3] corner positions (x, y, z) voxels
    valid: np.ndarray               #: bool [H, W]
    support: np.ndarray             #: float32 [H, W] consensus support of each accepted corner
    disagree: np.ndarray            #: float32 [H, W] share of the neighbours' patches that proposed elsewhere
    rival: np.ndarray               #: float32 [H, W] support of the best competing proposal / the winner's
    gen: np.ndarray                 #: int32 [H, W] generation of acceptance
    supporters: dict = field(default_factory=dict)   #: (r, c) -> tuple of patch indices
    used_approved: set = field(default_factory=set)
    generations: int = 0
    stop_reason: str = ""

    def grow_cols(self, n: int) -> None:
        H = self.pos.shape[0]
        self.pos = np.concatenate([self.pos, np.full((H, n, 3), -1.0)], 1)
        for name in ("valid", "support", "disagree", "rival", "gen"):
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.zeros((H, n), a.dtype)], 1))


def _guess(st: TraceState, r: int, c: int):
    H, W = st.valid.shape
    acc, n = np.zeros(3), 0
    for dr, dc in NBR4:
        r1, c1, r2, c2 = r + dr, c + dc, r + 2 * dr, c + 2 * dc
        if not (0 <= r1 < H and 0 <= c1 < W and st.valid[r1, c1]):
            continue
        if 0 <= r2 < H and 0 <= c2 < W and st.valid[r2, c2]:
            acc += 2 * st.pos[r1, c1] - st.pos[r2, c2]
            n += 1
        for er, ec in ((dc, dr), (-dc, -dr)):
            rm, cm = r1 + er, c1 + ec
            rk, ck = rm - dr, cm - dc
            if 0 <= rm < H and 0 <= cm < W and 0 <= rk < H and 0 <= ck < W and st.valid[rm, cm] and st.valid[rk, ck]:
                acc += st.pos[r1, c1] + st.pos[rk, ck] - st.pos[rm, cm]
                n += 1
    return acc / n if n else None


def _fringe_cells(valid: np.ndarray, cmin: int) -> list[tuple[int, int]]:
    """Empty cells with a valid 4-neighbour in columns ≥ ``cmin``, in row-major order."""
    nb = np.zeros_like(valid)
    nb[1:] |= valid[:-1]
    nb[:-1] |= valid[1:]
    nb[:, 1:] |= valid[:, :-1]
    nb[:, :-1] |= valid[:, 1:]
    nb &= ~valid
    nb[:, :cmin] = False
    return [(int(r), int(c)) for r, c in np.argwhere(nb)]


class Tracer:
    """State and loop of one trace (see the module docstring)."""

    def __init__(self, patches: PatchSet, seed: int, params: TraceParams, progress=None, warn=print,
                 snapshot=None):
        self.ps = patches
        self.seed = seed
        self.p = params
        self.S = params.cell
        self.progress = progress
        self.warn = warn
        self.snapshot = snapshot
        self.state: TraceState | None = None
        self.window = params.window_cells or max(6, int(round(2 * 1000 / params.cell * params.sliding_w_scale)))

    # ------------------------------------------------------------------ set-up
    def _init_state(self) -> TraceState:
        s = self.ps.search[self.seed]
        g, v = s.grid, s.valid
        rc = np.argwhere(v)
        centre = rc.mean(0)
        r0, c0 = rc[np.argmin(((rc - centre) ** 2).sum(1))]
        p0 = g[r0, c0]

        def tangent(dr, dc):
            for k in (1, 2, 3):
                for sgn in (1, -1):
                    r1, c1 = r0 + sgn * k * dr, c0 + sgn * k * dc
                    if 0 <= r1 < v.shape[0] and 0 <= c1 < v.shape[1] and v[r1, c1]:
                        t = sgn * (g[r1, c1] - p0)
                        return t / np.linalg.norm(t)
            return None
        tr, tc = tangent(1, 0), tangent(0, 1)
        if tr is None or tc is None:
            raise ValueError("seed patch too small to orient the trace")
        # rows follow the patch direction closer to z
        if abs(tc[2]) > abs(tr[2]):
            tr, tc = tc, tr
        if tr[2] < 0:
            tr = -tr
        n = np.cross(tc, tr)
        tc = np.cross(tr, n)
        tc /= np.linalg.norm(tc)
        if self.p.flip_x:
            tc = -tc
        zmin, zmax = self.ps.boxes[:, 0, 2].min(), self.ps.boxes[:, 1, 2].max()
        H = int(2 * math.ceil((zmax - zmin) / self.S) + 7)
        W = max(12, self.window + 6)
        st = TraceState(np.full((H, W, 3), -1.0), np.zeros((H, W), bool), np.zeros((H, W), np.float32),
                        np.zeros((H, W), np.float32), np.zeros((H, W), np.float32), np.zeros((H, W), np.int32))
        self.r0, self.c0 = H // 2, 3
        self.z0 = float(p0[2])
        self.row_dz = self.S * float(tr[2])  # z step per row (rows follow the seed's most-z-like direction)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                q = p0 + dr * self.S * tr + dc * self.S * tc
                d, cp = s.closest(q[None])
                if d[0] <= 0.5 * self.S:
                    r, c = self.r0 + dr, self.c0 + dc
                    st.pos[r, c], st.valid[r, c] = cp[0], True
                    st.supporters[(r, c)] = (self.seed,)
                    st.support[r, c] = self.p.inlier_base_threshold
        if st.valid.sum() < 4:
            raise ValueError("seed patch does not cover the initial 3×3 block (cell too large for the patch?)")
        return st

    # ------------------------------------------------------------------ one corner
    def _candidates(self, st: TraceState, r: int, c: int) -> tuple[set, dict]:
        H, W = st.valid.shape
        local: dict[int, int] = {}
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < H and 0 <= cc < W and st.valid[rr, cc]:
                    for t in st.supporters.get((rr, cc), ()):
                        local[t] = local.get(t, 0) + 1
        cand = set(local)
        for t in list(local):
            cand |= self.ps.links[t]
        return cand, local

    def _try_corner(self, st: TraceState, r: int, c: int, T: float):
        """Best (support, position, supporters, approved, disagree, rival) for cell (r, c), or None.

        ``disagree``: share of the neighbourhood's patches that proposed a point here but not the
        winner's; ``rival``: support of the best proposal that does not agree with the winner, over the
        winner's support (≈ 1 where two patch groups compete — a sheet jump in the making)."""
        guess = _guess(st, r, c)
        if guess is None:
            return None
        guess[2] = self.z_of_row(r)  # rows are z levels (VC3D's z-location prior)
        cand, local = self._candidates(st, r, c)
        if not cand:
            return None
        th = self.p.same_surface_th
        cand = np.array(sorted(cand))
        lo, hi = self.ps.boxes[cand, 0] - 0.6 * self.S, self.ps.boxes[cand, 1] + 0.6 * self.S
        cand = cand[((lo <= guess) & (hi >= guess)).all(1)]
        # each candidate's closest point to the guess = its proposal (one batched query)
        d, q = self.ps.packed.closest(guess[None], cand, 0.8 * self.S)
        keep = d[0] <= 0.8 * self.S
        ids = [int(t) for t in cand[keep]]
        if not ids:
            return None
        P = q[0, keep]
        # agree[i, j]: patch j agrees with proposal i — its own proposal is within th, or its surface
        # passes within th of proposal i (one batched query for all pairs)
        gap = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
        near = gap <= th
        agree = near | (self.ps.packed.closest(P, ids, th, enough=th)[0] <= th)
        proposed = set(ids)
        weight = np.array([1.0 + local.get(t, 0) for t in ids])
        scores = agree.astype(np.float64) @ weight
        near_seed = max(abs(r - self.r0), abs(c - self.c0)) <= 1
        best, proposals = None, []
        for i in np.argsort(-scores, kind="stable"):
            ref, q = ids[i], P[i]
            if self.p.z_range and not (self.p.z_range[0] <= q[2] <= self.p.z_range[1]):
                continue
            if ref in self.ps.approved and local.get(ref, 0) >= 2 and self._geometry_ok(st, r, c, q):
                return (1000.0, q, (ref,), True, 0.0, 0.0)
            proposals.append((float(scores[i]), q))
            if best is not None:
                continue
            members = np.nonzero(agree[i])[0]
            if len(members) < self.p.min_supporters and not (near_seed and ref == self.seed):
                continue
            if not self._geometry_ok(st, r, c, q):
                continue
            pts = np.where(near[i, members][:, None], P[members], q)
            agreeing = {ids[j] for j in members}
            proposers = [t for t in local if t in proposed]
            went_elsewhere = sum(1 for t in proposers if t not in agreeing)
            best = (float(scores[i]), pts.mean(0), tuple(sorted(agreeing)), False,
                    went_elsewhere / max(1, len(proposers)), 0.0)
            if not self.ps.approved:
                break
        if best is None:
            return None
        best = (*best[:5], self._rival(proposals, best))
        if near_seed and self.seed in best[2]:
            best = (max(best[0], T), *best[1:])
        return best

    def _rival(self, proposals, best) -> float:
        """Support of the strongest proposal lying off the winner's surface (farther than
        ``2·same_surface_th`` voxels from every winning patch: another sheet, not just a point further
        along the same one), over the winner's support; 0 if there is none."""
        far = 2 * self.p.same_surface_th
        for score, q in sorted(proposals, key=lambda x: -x[0]):
            if score < 0.2 * best[0]:
                break
            if np.linalg.norm(q - best[1]) <= far:
                continue
            if all(self.ps.search[t].distance(q[None])[0] > far for t in best[2][:4]):
                return min(1.0, score / max(best[0], 1e-6))
        return 0.0

    def _geometry_ok(self, st: TraceState, r: int, c: int, q: np.ndarray) -> bool:
        H, W = st.valid.shape
        for dr, dc in NBR4:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and st.valid[rr, cc]:
                L = np.linalg.norm(st.pos[rr, cc] - q)
                if L < 0.6 * self.S or L > 1.4 * self.S:
                    return False
        # no fold-over: nothing of the trace (beyond the 5×5 block) within S/2
        r0, r1 = max(0, r - 2), min(H, r + 3)
        c0, c1 = max(0, c - 2), min(W, c + 3)
        v = st.valid.copy()
        v[r0:r1, c0:c1] = False
        if v.any():
            d = np.linalg.norm(st.pos[v] - q, axis=1)
            if d.min() < 0.5 * self.S:
                return False
        return True

    # ------------------------------------------------------------------ loop
    def run(self) -> TraceState:
        st = self.state = self._init_state()
        p = self.p
        T = float(p.inlier_base_threshold)
        tried: dict[tuple[int, int], tuple[float, int]] = {}
        max_cols = max(8, int(p.max_width / p.step))
        gen = 0
        t0 = time.monotonic()
        opt_at, stall_opt = 0, False  # corners at the last windowed optimisation; optimised at this stall?
        while gen < p.max_generations:
            gen += 1
            cols = np.nonzero(st.valid.any(0))[0]
            cmin_active = max(0, cols[-1] - self.window)
            H, W = st.valid.shape
            fringe = []
            for r, c in _fringe_cells(st.valid, cmin_active):
                # retry a failed cell when the threshold dropped or it gained neighbours
                prev = tried.get((r, c))
                if prev is None or T < prev[0] or self._n_valid(st, r, c) > prev[1]:
                    fringe.append((r, c))
            accepted, best_seen = 0, -1.0
            for r, c in fringe:
                res = self._try_corner(st, r, c, T)
                if res is None:
                    tried[(r, c)] = (T, self._n_valid(st, r, c))
                    continue
                score, q, agree, approved, dis, rival = res
                if approved or score >= T:
                    st.pos[r, c], st.valid[r, c] = q, True
                    st.support[r, c], st.disagree[r, c], st.gen[r, c] = score, dis, gen
                    st.rival[r, c] = rival
                    st.supporters[(r, c)] = agree
                    if approved:
                        st.used_approved.add(agree[0])
                    tried.pop((r, c), None)
                    accepted += 1
                else:
                    tried[(r, c)] = (T, self._n_valid(st, r, c))
                    best_seen = max(best_seen, score)
            st.generations = gen
            if accepted == 0 and p.global_steps_per_window > 0 and not stall_opt:
                stall_opt = True  # growth stalled: optimise the window once, then retry at this threshold
                if self._optimize_front(st, cols[-1]):
                    tried.clear()
                    continue
            if accepted == 0:
                lb = p.consensus_default_th if T > p.consensus_default_th else p.consensus_limit_th
                if T > lb:
                    T = T - (1 + T - lb) // 2
                    T = float(min(T, max(best_seen, lb)))
                    continue
                st.stop_reason = f"no corner reaches consensus (threshold {T:g}) at the front"
                break
            T = float(p.inlier_base_threshold)
            stall_opt = False
            n_valid = int(st.valid.sum())
            if p.global_steps_per_window > 0 and n_valid > opt_at:
                opt_at = n_valid
                self._optimize_front(st, cols[-1])
            cols = np.nonzero(st.valid.any(0))[0]
            if cols[-1] >= st.valid.shape[1] - 3:
                if st.valid.shape[1] >= max_cols:
                    st.stop_reason = "reached max_width"
                    break
                st.grow_cols(min(16, max_cols - st.valid.shape[1]))
                # keep the partial-result handle pointing at the live state
            if self.snapshot and p.snapshot_every and gen % p.snapshot_every == 0:
                self.snapshot(st, gen)
            if self.progress:
                self.progress(min(0.99, gen / 1000.0),
                              f"generation {gen}: {int(st.valid.sum())} corners, {cols[-1] - self.c0 + 1} columns, "
                              f"{time.monotonic() - t0:.0f} s")
        else:
            st.stop_reason = f"reached max_generations={p.max_generations}"
        self.fill_holes(st)
        return st

    def fill_holes(self, st: TraceState, rounds: int = 3) -> int:
        """Fill interior holes (≥ 3 valid 4-neighbours): the neighbours' extrapolation snapped onto the
        patches that support them, if ≥ 1 passes within ``same_surface_th`` (low support: QA shows it)."""
        H, W = st.valid.shape
        filled = 0
        for _ in range(rounds):
            todo = [(r, c) for r in range(H) for c in range(W) if not st.valid[r, c] and
                    sum(0 <= r + dr < H and 0 <= c + dc < W and st.valid[r + dr, c + dc] for dr, dc in NBR4) >= 3]
            if not todo:
                break
            for r, c in todo:
                g = _guess(st, r, c)
                if g is None:
                    continue
                _, local = self._candidates(st, r, c)
                pts, agree = [], []
                for t in sorted(local):
                    d, q = self.ps.search[t].closest(g[None])
                    if d[0] <= 0.5 * self.S:
                        pts.append(q[0])
                        agree.append(t)
                if not pts:
                    continue
                q = np.mean(pts, axis=0)
                if all(self.ps.search[t].distance(q[None])[0] <= self.p.same_surface_th for t in agree) and \
                        self._geometry_ok(st, r, c, q):
                    st.pos[r, c], st.valid[r, c] = q, True
                    st.support[r, c], st.gen[r, c] = len(agree), st.generations
                    st.supporters[(r, c)] = tuple(agree)
                    filled += 1
        return filled

    def z_of_row(self, r: int) -> float:
        """Target z (voxels) of trace row ``r``: the seed's z plus one row step per row."""
        return self.z0 + (r - self.r0) * self.row_dz

    @staticmethod
    def _n_valid(st: TraceState, r: int, c: int) -> int:
        H, W = st.valid.shape
        return int(st.valid[max(0, r - 1):min(H, r + 2), max(0, c - 1):min(W, c + 2)].sum())

    def _optimize_front(self, st: TraceState, front_col: int, depth: int = 12) -> int:
        """``global_steps_per_window`` rounds of :meth:`_optimize_window` over the ``depth`` columns
        behind the front (older corners stay as they are). Returns corners moved."""
        cmin = max(0, front_col - depth)
        return sum(self._optimize_window(st, cmin) for _ in range(self.p.global_steps_per_window))

    def _optimize_window(self, st: TraceState, cmin: int, sweeps: int = 4) -> int:
        """Windowed global optimisation: regularise the active window's corners by least squares
        (:func:`vcd.kernels.gridopt.regularise_window` — spacing, straightness, z prior, tied to the
        sheet), then put each back onto its supporting patches. A corner none of its supporters is
        within ``2·same_surface_th`` of afterwards keeps its old place. Returns corners moved."""
        H, W = st.valid.shape
        free = st.valid.copy()
        free[:, :cmin] = False
        free[max(0, self.r0 - 1):self.r0 + 2, max(0, self.c0 - 1):self.c0 + 2] = False  # the seed block is static
        if not free.any():
            return 0
        normal, ok = qa.corner_normals(st.pos, st.valid)
        free &= ok
        zt = np.array([self.z_of_row(r) for r in range(H)])
        p = self.p
        new = regularise_window(st.pos, free, st.valid, zt, st.pos, normal, float(self.S), p.dist_loss_3d_w,
                                p.straight_weight_3D, p.z_loc_loss_w, 10.0, sweeps, 1e-3)
        cells = [tuple(rc) for rc in np.argwhere(free)]
        surfaces = sorted({t for rc in cells for t in st.supporters.get(rc, ())})
        if not surfaces:
            return 0
        col = {t: k for k, t in enumerate(surfaces)}
        far = 2 * p.same_surface_th
        d, q = self.ps.packed.closest(np.array([new[rc] for rc in cells]), surfaces, far)
        moved = 0
        for i, rc in enumerate(cells):
            sup = [t for t in st.supporters.get(rc, ()) if d[i, col[t]] <= far]
            if not sup:
                continue
            st.pos[rc] = np.mean([q[i, col[t]] for t in sup], axis=0)
            st.supporters[rc] = tuple(sup)
            moved += 1
        return moved


def upsample(st: TraceState, ps: PatchSet, factor: int, snap_th: float) -> np.ndarray:
    """Corners → patch-resolution grid: each valid quad is bilinearly subdivided ``factor`` times and
    every point snapped onto the closest of the quad's supporting patches (if within ``snap_th``)."""
    v = st.valid
    rows, cols = np.nonzero(v.any(1))[0], np.nonzero(v.any(0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    H, W = (r1 - r0) * factor + 1, (c1 - c0) * factor + 1
    out = np.full((H, W, 3), -1.0)
    t = np.arange(factor + 1) / factor
    for r in range(r0, r1):
        for c in range(c0, c1):
            if not (v[r, c] and v[r + 1, c] and v[r, c + 1] and v[r + 1, c + 1]):
                continue
            a, b, d, e = st.pos[r, c], st.pos[r, c + 1], st.pos[r + 1, c], st.pos[r + 1, c + 1]
            uu, ww = np.meshgrid(t, t, indexing="ij")  # ww along columns, uu along rows
            pts = ((1 - uu) * (1 - ww))[..., None] * a + ((1 - uu) * ww)[..., None] * b + \
                  (uu * (1 - ww))[..., None] * d + (uu * ww)[..., None] * e
            flat = pts.reshape(-1, 3)
            sup = set()
            for key in ((r, c), (r, c + 1), (r + 1, c), (r + 1, c + 1)):
                sup |= set(st.supporters.get(key, ()))
            best_d, best_p = np.full(len(flat), np.inf), flat
            if sup:
                dd, qq = ps.packed.closest(flat, sorted(sup), snap_th)
                k = dd.argmin(1)
                best_d, best_p = dd[np.arange(len(flat)), k], qq[np.arange(len(flat)), k]
            snapped = np.where((best_d <= snap_th)[:, None], best_p, flat).reshape(pts.shape)
            rr, cc = (r - r0) * factor, (c - c0) * factor
            out[rr:rr + factor + 1, cc:cc + factor + 1] = snapped
    for r in range(r0, r1 + 1):  # isolated valid corners (no full quad) keep their position
        for c in range(c0, c1 + 1):
            if v[r, c]:
                rr, cc = (r - r0) * factor, (c - c0) * factor
                if out[rr, cc, 0] == -1:
                    out[rr, cc] = st.pos[r, c]
    return out.astype(np.float32)
