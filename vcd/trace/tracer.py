r"""Grow one large trace by consensus of overlapping patches — following the patches, not proximity.

The trace is a quad grid of *cells* ``S = step × src_step`` voxels apart; rows run along the
seed patch's direction closest to z, columns grow towards +u (−u with ``flip_x``). Every accepted
corner keeps, for each supporting patch, its fractional (row, col) *in that patch's own grid*
(``TraceState.locs``): the identity of the patch and of the part of it that carries the corner.

**One generation.** For every *fringe* cell (empty, next to a valid corner, inside the active
window of the last ``window_cells`` columns — so the work per generation is proportional to the
window, not to the trace):

1. *guess* its position by extrapolating valid neighbours (``2q1 − q2`` lines, parallelograms),
   with z set to the row's z level (rows are z levels: VC3D's z-location prior);
2. *proposals*: every patch supporting a neighbouring corner (8-neighbourhood) walks its own grid
   from its (row, col) there towards the guess (Gauss–Newton steps of ≤ 1 grid unit,
   :func:`vcd.kernels.multisurface.walk_many`), then slides along that grid ray (the projection of
   a linear extrapolation falls short on a curved sheet) until the point is one cell (``S`` voxels, ``√2 S`` from a diagonal neighbour) from its own point at the start.
   A walk that enters a hole, a masked part or the patch's edge fails — so a cell wider than the
   wrap spacing cannot land on another wrap, and where the patches stop the front stops;
3. *agreement*: patch ``j`` agrees with proposal ``i`` if its proposal is within ``same_surface_th``
   voxels or its grid, walked from its own proposal, reaches within that of ``i``. Patches linked
   (overlap graph) to the proposers but not supporting a neighbour may *vote* for a proposal their
   surface passes within ``same_surface_th`` of, never propose;
4. *consensus*: support :math:`= \sum_{t \in agree} w_t (1 + n_t)` where :math:`n_t` counts the
   neighbouring corners ``t`` supports and :math:`w_t` is ``t``'s trust in that part of its grid
   (each time a patch is out-voted its trust in that patch-grid block of ``TRUST_BLOCK`` cells
   halves; agreeing restores it — a patch wrong in one place still counts elsewhere);
5. accept the best proposal if support ≥ the threshold *T*, at least ``min_supporters`` distinct
   patches agree, spacing to its 4-neighbours is within [0.6 S, 1.4 S] and it does not fold onto
   the trace; the corner becomes the mean of the agreeing proposals, every agreeing patch's
   (row, col) is walked onto it, and the *second ring* (patches linked to them whose surface passes
   within ``same_surface_th`` of the corner) attaches. An ``approved`` proposer (whole patch, or an
   approved vertex of its ``approval.tif``) anchored on ≥ 2 neighbours is accepted without consensus. ``defective`` patches are never loaded; masked pixels
   are holes.

**Threshold schedule** (VC3D): *T* starts at ``inlier_base_threshold``; a generation that accepts
nothing lowers it towards ``consensus_default_th`` and then ``consensus_limit_th`` (only when the
trace would otherwise end); any progress resets it. **Windowed optimisation**: with
``global_steps_per_window`` > 0, after every generation that added corners and once when growth
stalls (before the threshold drops), the interior corners (4 valid neighbours) of the last 12
columns are regularised by least squares (8-neighbour spacing, straightness, z prior, point-to-plane
tie to the sheet; :mod:`vcd.kernels.gridopt`, weights ``dist_loss_3d_w``, ``straight_weight_3D``,
``z_loc_loss_w``) and walked back onto their supporting patches, that many times. **QA** (see
:mod:`vcd.trace.qa`): per corner the share of proposers out-voted, the rival group's support, and
the distance to the supporters' consensus surface. **Output**: corners upsampled ``step`` times,
each point read from the patches supporting its whole quad at the blend of their (row, col), i.e.
on the patches' own sheet at their grid resolution.

Modules: this one the loop (:class:`Tracer`: proposals, consensus, acceptance, optimisation);
:mod:`vcd.trace.state` the grid (:class:`~vcd.trace.state.TraceState`); :mod:`vcd.trace.bridge`
crossing gaps between patch groups (mixed into :class:`Tracer`); :mod:`vcd.trace.upsample` the
output grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..kernels.gridopt import regularise_window
from ..kernels.points import valid_quads
from . import qa
from .bridge import Bridging
from .params import TraceParams
from .patches import PatchSet
from .progress import trace_progress
from .state import NBR4, NBR8, TraceState, fringe_cells


@dataclass
class Candidate:
    """The consensus result for one cell: position, supporters' locs and the QA/trust evidence."""
    score: float
    q: np.ndarray
    locs: dict
    approved: bool = False
    disagree: float = 0.0
    rival: float = 0.0
    proposers: np.ndarray = None    #: patch ids that proposed a point
    proposal_locs: np.ndarray = None
    members: frozenset = frozenset()


@dataclass
class Proposal:
    """The walks that propose a point for one cell (:meth:`Tracer._propose`); row ``i`` of each
    array is one proposing patch."""
    ids: np.ndarray     #: int64 [n] patch ids
    points: np.ndarray  #: float [n, 3] proposed points (x, y, z) voxels
    locs: np.ndarray    #: float [n, 2] (row, col) on each patch's grid where its walk ended
    local: dict         #: {patch id: how many of the cell's 3×3 neighbours it supports}


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


class FoldCorners:
    """The trace's valid corners outside the 5×5 block around cell (r, c), ``points`` N×3 (x, y, z)
    voxels, gathered on first use: the fold-over check of all of one cell's proposals reads them once
    (nothing moves while :meth:`Tracer._try_corner` decides the cell)."""

    def __init__(self, st: TraceState, r: int, c: int):
        self.st, self.r, self.c = st, r, c
        self._points = None

    @property
    def points(self) -> np.ndarray:
        if self._points is None:
            H, W = self.st.valid.shape
            v = self.st.valid.copy()
            v[max(0, self.r - 2):min(H, self.r + 3), max(0, self.c - 2):min(W, self.c + 3)] = False
            self._points = self.st.pos[v]
        return self._points


def patch_steps(ps: PatchSet) -> np.ndarray:
    """Median grid spacing (voxels) of every patch (its 4-neighbour edge lengths)."""
    out = np.ones(len(ps.search))
    for i, s in enumerate(ps.search):
        g, v = s.grid, s.valid
        e = np.concatenate([np.linalg.norm(g[:, 1:] - g[:, :-1], axis=-1)[v[:, 1:] & v[:, :-1]],
                            np.linalg.norm(g[1:] - g[:-1], axis=-1)[v[1:] & v[:-1]]])
        if len(e):
            out[i] = max(float(np.median(e)), 1e-3)
    return out


class Tracer(Bridging):
    """State and loop of one trace (see the module docstring)."""

    TRUST_BLOCK = 2.0    #: trust regions: patch-grid blocks of this many trace cells
    TRUST_LOSS = 0.5     #: factor on a patch's trust in a region each time it is out-voted there
    TRUST_GAIN = 1.25    #: factor (up to 1) each time it agrees with the accepted corner there

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
        self.kcell = self.S / patch_steps(patches)   #: one trace cell in each patch's grid units
        self.trust: dict[tuple[int, int, int], float] = {}
        self._no_bridge: dict[tuple[int, int, int, int], int] = {}  #: failed bridge plans -> corners around then

    # ------------------------------------------------------------------ set-up
    def _init_state(self) -> TraceState:
        s = self.ps.search[self.seed]
        g, v = s.grid, s.valid
        quad = np.zeros_like(v)
        quad[:-1, :-1] = valid_quads(v)
        rc = np.argwhere(quad if quad.any() else v)
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
        name = self.ps.names[self.seed]
        if tr is None or tc is None:
            raise InputError(name, "seed patch too small to orient the trace", "choose a larger seed patch")
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
        z = lambda dt: np.zeros((H, W), dt)  # noqa: E731
        st = TraceState(np.full((H, W, 3), -1.0), z(bool), z(np.float32), z(np.float32), z(np.float32), z(np.int32))
        self.r0, self.c0 = H // 2, 3
        self.z0 = float(p0[2])
        self.row_dz = self.S * float(tr[2])  # z step per row (rows follow the seed's most-z-like direction)
        block = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
        targets = np.array([p0 + dr * self.S * tr + dc * self.S * tc for dr, dc in block])
        k = self.kcell[self.seed]
        L, P, ok, tg = self.ps.packed.walk([self.seed] * 9, [(float(r0), float(c0))] * 9, targets, 2 * k + 1)
        ok &= tg <= 0.35 * self.S
        if ok.sum() < 4:
            raise InputError(name, f"seed patch does not cover the initial 3×3 block of {self.S:g}-voxel cells",
                             "use a larger seed patch or a smaller step (src_step must be the patches' step_size)")
        for (dr, dc), good, q, loc in zip(block, ok, P, L):
            if good and (self.p.z_ok(q[2]) or (dr, dc) == (0, 0)):  # the seed corner itself always
                r, c = self.r0 + dr, self.c0 + dc
                st.set_corner(r, c, q, self._attach(q, {self.seed: loc}))
                st.support[r, c] = self.p.inlier_base_threshold
        return st

    # ------------------------------------------------------------------ patch-following primitives
    def _attach(self, q: np.ndarray, locs: dict, exclude=()) -> dict:
        """``locs`` plus the *second ring*: patches linked (overlap graph) to those of ``locs`` whose
        surface passes within ``same_surface_th`` voxels of the accepted corner ``q``, with their
        (row, col) there. ``exclude``: patches that proposed elsewhere (they do not attach here)."""
        th = self.p.same_surface_th
        ring = set()
        for t in locs:
            ring |= self.ps.links[t]
        ring = np.array(sorted(ring - set(locs) - set(exclude)), np.int64)
        if len(ring):
            b = self.ps.boxes[ring]
            ring = ring[((b[:, 0] - th <= q) & (b[:, 1] + th >= q)).all(1)]
        out = dict(locs)
        if len(ring):
            d, _, L = self.ps.packed.closest_locs(q[None], ring, th)
            for j, t in enumerate(ring):
                if d[0, j] <= th:
                    out[int(t)] = L[0, j].copy()
        return out

    def _region(self, t: int, loc) -> tuple[int, int, int]:
        B = max(1.0, self.TRUST_BLOCK * self.kcell[t])
        return int(t), int(loc[0] // B), int(loc[1] // B)

    def _trust(self, t: int, loc) -> float:
        return self.trust.get(self._region(t, loc), 1.0)

    def _update_trust(self, cand: Candidate) -> None:
        """Out-voted proposers lose trust in their patch region there; agreeing ones regain it."""
        for t, loc in zip(cand.proposers, cand.proposal_locs):
            key = self._region(int(t), loc)
            w = self.trust.get(key, 1.0)
            w = min(1.0, w * self.TRUST_GAIN) if int(t) in cand.members else w * self.TRUST_LOSS
            if w >= 1.0:
                self.trust.pop(key, None)
            else:
                self.trust[key] = w

    def _propose(self, st: TraceState, r: int, c: int) -> Proposal | None:
        """Each patch supporting a neighbouring corner walks its own grid from its (row, col) there
        towards the extrapolated position of (r, c). Returns the :class:`Proposal` of the walks that
        stayed on valid parts of their patch, or None."""
        guess = _guess(st, r, c)
        if guess is None:
            return None
        guess[2] = self.z_of_row(r)  # rows are z levels (VC3D's z-location prior)
        H, W = st.valid.shape
        starts: dict[int, tuple] = {}
        local: dict[int, int] = {}
        for dr, dc in NBR8:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and st.valid[rr, cc]:
                for t, loc in st.locs.get((rr, cc), {}).items():
                    local[t] = local.get(t, 0) + 1
                    starts.setdefault(t, (loc, math.hypot(dr, dc)))
        if not starts:
            return None
        ids = np.fromiter(starts, np.int64, len(starts))
        L0 = np.array([starts[t][0] for t in ids])
        span = np.array([starts[t][1] for t in ids]) * self.S
        L, P, ok, tg = self.ps.packed.walk(ids, L0, np.tile(guess, (len(ids), 1)), 2 * self.kcell[ids] + 1,
                                           span=span)
        ok &= tg <= 0.5 * self.S
        zb = self.p.z_bounds
        if zb is not None:
            ok &= (P[:, 2] >= zb[0]) & (P[:, 2] <= zb[1])
        if not ok.any():
            return None
        return Proposal(ids[ok], P[ok], L[ok], local)

    def _agreement(self, ids, P, L):
        """``agree[i, j]``: patch ``j`` agrees with proposal ``i`` — its own proposal is within
        ``same_surface_th``, or its grid, walked from its own proposal, reaches within that of ``i``
        (so only the same part of the same sheet counts, never another wrap passing nearby)."""
        th = self.p.same_surface_th
        gap = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
        agree = gap <= th
        i, j = np.nonzero((~agree) & (gap <= 0.5 * self.S))
        if len(i):
            _, Q, ok, _ = self.ps.packed.walk(ids[j], L[j], P[i], 0.75 * self.kcell[ids[j]] + 1)
            hit = ok & (np.linalg.norm(Q - P[i], axis=1) <= th)
            agree[i[hit], j[hit]] = True
        return agree, gap

    def _ring(self, ids, P, local):
        """Patches linked (overlap graph) to the proposers that are not proposers themselves: they may
        *vote* for a proposal their surface passes within ``same_surface_th`` of, never propose.
        Returns ``(ring ids [m], agree [n, m], locs [n, m, 2])``."""
        th = self.p.same_surface_th
        ring = set()
        for t in ids:
            ring |= self.ps.links[int(t)]
        ring = np.array(sorted(ring - set(int(t) for t in ids)), np.int64)
        if len(ring):
            lo, hi = P.min(0) - th, P.max(0) + th
            b = self.ps.boxes[ring]
            ring = ring[((b[:, 0] <= hi) & (b[:, 1] >= lo)).all(1)]
        if not len(ring):
            return ring, np.zeros((len(ids), 0), bool), np.zeros((len(ids), 0, 2))
        # one query per cluster of proposals (within th/4 of its first member): they coincide on clean data
        gap = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
        rep = np.full(len(P), -1)
        for i in range(len(P)):
            if rep[i] < 0:
                rep[(rep < 0) & (gap[i] <= 0.25 * th)] = i
        heads, inv = np.unique(rep, return_inverse=True)
        d, _, L = self.ps.packed.closest_locs(P[heads], ring, th, enough=0.5 * th)
        return ring, (d <= th)[inv], L[inv]

    def _settle(self, q: np.ndarray, members) -> dict:
        """(row, col) of each member patch at the corner ``q``: its grid walked from its start
        (row, col) (``members``: list of (patch, loc)); those that cannot reach ``q`` drop out."""
        m = np.array([t for t, _ in members], np.int64)
        L0 = np.array([l for _, l in members])
        L2, Q, ok, _ = self.ps.packed.walk(m, L0, np.tile(q, (len(m), 1)), 0.75 * self.kcell[m] + 1)
        ok &= np.linalg.norm(Q - q, axis=1) <= self.p.same_surface_th
        return {int(t): L2[n].copy() for n, t in enumerate(m) if ok[n]}

    # ------------------------------------------------------------------ one corner
    def _try_corner(self, st: TraceState, r: int, c: int, T: float, fill: bool = False) -> Candidate | None:
        """Consensus for cell (r, c) (see the module docstring), or None. ``fill``: hole filling —
        one supporter is enough but every proposer must agree."""
        prop = self._propose(st, r, c)
        if prop is None:
            return None
        fold = FoldCorners(st, r, c)  # gathered once for all of this cell's proposals
        ids, P, L, local = prop.ids, prop.points, prop.locs, prop.local
        agree, gap = self._agreement(ids, P, L)
        rids, ragree, rlocs = self._ring(ids, P, local)
        w = np.array([self._trust(int(t), l) * (1.0 + local.get(int(t), 0)) for t, l in zip(ids, L)])
        scores = agree.astype(np.float64) @ w + ragree.sum(1)
        near_seed = max(abs(r - self.r0), abs(c - self.c0)) <= 1
        best = None
        for i in np.argsort(-scores, kind="stable"):
            ref = int(ids[i])
            if self.ps.trusted(ref, L[i]) and local.get(ref, 0) >= 2 and self._geometry_ok(st, r, c, P[i], fold):
                locs = self._attach(P[i], {ref: L[i].copy()})
                return Candidate(1000.0, P[i], locs, True, proposers=ids, proposal_locs=L, members=frozenset([ref]))
            if best is not None:
                continue
            members = np.nonzero(agree[i])[0]
            if fill and len(members) < len(ids):
                continue
            n_sup = len(members) + int(ragree[i].sum())
            if n_sup < (1 if fill else self.p.min_supporters) and not (near_seed and ref == self.seed):
                continue
            near = members[gap[i, members] <= self.p.same_surface_th]
            q = P[near].mean(0)
            if not self._geometry_ok(st, r, c, q, fold):
                continue
            voters = [(int(ids[j]), L[j]) for j in members] + \
                     [(int(rids[j]), rlocs[i, j]) for j in np.nonzero(ragree[i])[0]]
            best = self._candidate(q, i, members, voters, ids, L, agree, gap, scores, agree.sum(1) + ragree.sum(1))
            if best is None or not self.ps.any_approved:
                break
        if best is not None and near_seed and self.seed in best.locs:
            best.score = max(best.score, T)
        return best

    def _candidate(self, q, i, members, voters, ids, L, agree, gap, scores, votes) -> Candidate | None:
        """The accepted corner's record. ``rival``: the strongest proposal none of the winners agrees
        with, off the winner's surface — its support over the winner's, and at least 0.5 when
        ``min_supporters`` patches back it (two patch groups each describe a different sheet here;
        patch-following proposals never disagree like that on correct patches)."""
        locs = self._settle(q, voters)
        if not locs:
            return None
        member_ids = frozenset(int(ids[m]) for m in members)
        others = [int(t) for t in ids if int(t) not in member_ids]
        locs = self._attach(q, locs, exclude=others)
        off = ~agree[:, members].any(1) & ~agree[members, :].any(0) & (gap[i] > 2 * self.p.same_surface_th)
        rival = 0.0
        if off.any():
            k = np.nonzero(off)[0][np.argmax(scores[off])]
            rival = float(scores[k] / max(scores[i], 1e-6))
            if votes[k] >= self.p.min_supporters:
                rival = max(rival, 0.5)
        return Candidate(float(scores[i]), q, locs, False, len(others) / len(ids), min(1.0, rival), ids, L,
                         member_ids)

    def _geometry_ok(self, st: TraceState, r: int, c: int, q: np.ndarray, fold: FoldCorners | None = None) -> bool:
        """Whether corner ``q`` (x, y, z voxels) may sit at cell (r, c): inside the z limits, 0.6–1.4 cells
        from its valid 4-neighbours, and no corner beyond its 5×5 block within half a cell (no fold-over).
        ``fold``: that cell's :class:`FoldCorners`, shared by its proposals (None: gathered here)."""
        if not self.p.z_ok(q[2]):  # z_range / z_min / z_max (VC3D: corners outside are refused)
            return False
        H, W = st.valid.shape
        for dr, dc in NBR4:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and st.valid[rr, cc]:
                L = np.linalg.norm(st.pos[rr, cc] - q)
                if L < 0.6 * self.S or L > 1.4 * self.S:
                    return False
        # no fold-over: nothing of the trace (beyond the 5×5 block) within S/2
        others = (fold or FoldCorners(st, r, c)).points
        if len(others):
            d = ((others - q) ** 2).sum(1)
            if d.min() < (0.5 * self.S) ** 2:
                return False
        return True

    # ------------------------------------------------------------------ loop
    def run(self) -> TraceState:
        """Trace until no corner can be added (or the generation limit); returns the corner grid."""
        st = self.state = self._init_state()
        p = self.p
        T = float(p.inlier_base_threshold)
        tried: dict[tuple[int, int], tuple[float, int]] = {}
        max_cols = max(8, int(p.max_width / p.step))
        gen = 0
        opt_at, stall_opt = 0, False  # corners at the last windowed optimisation; optimised at this stall?
        while gen < p.max_generations:
            gen += 1
            cols = np.nonzero(st.valid.any(0))[0]
            cmin_active = max(0, cols[-1] - self.window)
            H, W = st.valid.shape
            fringe = []
            for r, c in fringe_cells(st.valid, cmin_active):
                # retry a failed cell when the threshold dropped or it gained neighbours
                prev = tried.get((r, c))
                if prev is None or T < prev[0] or self._n_valid(st, r, c) > prev[1]:
                    fringe.append((r, c))
            accepted, best_seen = 0, -1.0
            for r, c in fringe:
                cand = self._try_corner(st, r, c, T)
                if cand is None:
                    tried[(r, c)] = (T, self._n_valid(st, r, c))
                    continue
                if cand.approved or cand.score >= T:
                    self._accept(st, r, c, cand, gen)
                    tried.pop((r, c), None)
                    accepted += 1
                else:
                    tried[(r, c)] = (T, self._n_valid(st, r, c))
                    best_seen = max(best_seen, cand.score)
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
                if self._bridge(st, cmin_active):
                    tried.clear()
                    T = float(p.inlier_base_threshold)
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
                trace_progress(self).generation(st, gen, cols[-1] - self.c0 + 1)
        else:
            st.stop_reason = f"reached max_generations={p.max_generations}"
        self.fill_holes(st)
        self.finish(st)
        if self.progress:
            trace_progress(self).done(st)
        return st

    def _accept(self, st: TraceState, r: int, c: int, cand: Candidate, gen: int) -> None:
        st.set_corner(r, c, cand.q, cand.locs)
        st.support[r, c], st.disagree[r, c], st.gen[r, c] = cand.score, cand.disagree, gen
        st.rival[r, c] = cand.rival
        if cand.approved:
            st.used_approved.add(next(iter(cand.members)))
        self._update_trust(cand)

    def fill_holes(self, st: TraceState, rounds: int = 3) -> int:
        """Fill interior holes (≥ 3 valid 4-neighbours) from the patches supporting their neighbours,
        walked along their own grids; every proposer must agree (low support: QA shows it)."""
        H, W = st.valid.shape
        filled = 0
        for _ in range(rounds):
            todo = [(r, c) for r, c in fringe_cells(st.valid, 0) if
                    sum(0 <= r + dr < H and 0 <= c + dc < W and st.valid[r + dr, c + dc] for dr, dc in NBR4) >= 3]
            n0 = filled
            for r, c in todo:
                cand = self._try_corner(st, r, c, 0.0, fill=True)
                if cand is not None:
                    self._accept(st, r, c, cand, st.generations)
                    st.support[r, c] = len(cand.members)
                    filled += 1
            if filled == n0:
                break
        return filled

    def finish(self, st: TraceState) -> None:
        """The QA term "off the supporting patches' consensus surface": for every corner, the median
        distance (voxels) to its supporters' surfaces at their (row, col), over ``2·same_surface_th``."""
        keys = [k for k in st.locs if st.valid[k]]
        ids = [t for k in keys for t in st.locs[k]]
        if not ids:
            return
        locs = np.array([st.locs[k][t] for k in keys for t in st.locs[k]])
        P, ok = self.ps.packed.at(ids, locs)
        n = np.array([len(st.locs[k]) for k in keys])
        owner = np.repeat(np.arange(len(keys)), n)
        d = np.where(ok, np.linalg.norm(P - np.array([st.pos[k] for k in keys])[owner], axis=1), np.inf)
        for j, k in enumerate(keys):
            dk = d[owner == j]
            st.offsurf[k] = min(1.0, float(np.median(dk)) / (2 * self.p.same_surface_th)) if len(dk) else 1.0

    def z_of_row(self, r: int) -> float:
        """Target z (voxels) of trace row ``r``: the seed's z plus one row step per row."""
        return self.z0 + (r - self.r0) * self.row_dz

    @staticmethod
    def _n_valid(st: TraceState, r: int, c: int, k: int = 1) -> int:
        """Valid corners in the (2k+1)² block around (r, c)."""
        H, W = st.valid.shape
        return int(st.valid[max(0, r - k):min(H, r + k + 1), max(0, c - k):min(W, c + k + 1)].sum())

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
        v = st.valid
        inner = np.zeros_like(v)  # only corners with all 4 neighbours move: a one-sided front corner
        inner[1:-1, 1:-1] = v[:-2, 1:-1] & v[2:, 1:-1] & v[1:-1, :-2] & v[1:-1, 2:]  # would be dragged
        free &= ok & inner
        zt = np.array([self.z_of_row(r) for r in range(H)])
        p = self.p
        new = regularise_window(st.pos, free, st.valid, zt, st.pos, normal, float(self.S), p.dist_loss_3d_w,
                                p.straight_weight_3D, p.z_loc_loss_w, 10.0, sweeps, 1e-3)
        moved = 0
        far = 2 * p.same_surface_th
        for rc in (tuple(x) for x in np.argwhere(free)):
            locs = st.locs.get(rc, {})
            if not locs:
                continue
            ids = np.fromiter(locs, np.int64, len(locs))
            L, Q, ok, _ = self.ps.packed.walk(ids, np.array([locs[t] for t in ids]), np.tile(new[rc], (len(ids), 1)),
                                              0.75 * self.kcell[ids] + 1)
            ok &= np.linalg.norm(Q - new[rc], axis=1) <= far
            if not ok.any() or not self.p.z_ok(Q[ok].mean(0)[2]):
                continue
            st.set_corner(*rc, Q[ok].mean(0), {int(t): L[k].copy() for k, t in enumerate(ids) if ok[k]})
            moved += 1
        return moved
