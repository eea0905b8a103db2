"""Bridging: crossing short gaps between patch groups where patch-following growth stops.

From a fringe cell with 3 valid corners behind it in a line, the grid is continued along the circle
through them (guided by the neighbouring wraps, :mod:`vcd.trace.guide`) up to ``bridge_cells``
cells; the first distance where enough patches agree is that cell's bridge (see
:meth:`Bridging._bridge`). A mixin of :class:`vcd.trace.tracer.Tracer`: its methods use the
tracer's patches (``ps``), params (``p``), cell size (``S``, voxels) and corner tests.
"""

from __future__ import annotations

import math

import numpy as np

from .guide import find_guides, transport
from .state import NBR4, TraceState, fringe_cells


def _arc_extrapolate(p3, p2, p1, n: float) -> np.ndarray:
    """Continue the circle through ``p3, p2, p1`` (equally spaced (x, y, z) points) ``n`` steps beyond
    ``p1`` (a straight line if they are collinear)."""
    u, w = p2 - p1, p3 - p1
    nrm = np.cross(u, w)
    nn = float(nrm @ nrm)
    if nn < 1e-9 * max(float(u @ u) * float(w @ w), 1e-12):
        return p1 + n * (p1 - p2)
    c = p1 + np.cross(float(u @ u) * w - float(w @ w) * u, nrm) / (2 * nn)
    a, b = p2 - c, p1 - c
    k = np.cross(a, b)
    k /= np.linalg.norm(k)
    phi = n * math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b))
    return c + b * math.cos(phi) + np.cross(k, b) * math.sin(phi) + k * float(k @ b) * (1 - math.cos(phi))


class Bridging:
    """The tracer's bridging steps (mixed into :class:`vcd.trace.tracer.Tracer`)."""

    BRIDGE_MAX_TURN = 1.0  #: a bridge may turn at most this (radians) along its circle: past that the
    #: circle is no guide (near the core a 3-cell continuation can swing onto the next wrap)

    def _bridge(self, st: TraceState, cmin: int) -> int:
        """Cross short gaps between patch groups: from every fringe cell with 3 valid corners behind
        it in a line, continue the grid along the circle through them up to ``bridge_cells`` cells
        (and at most ``BRIDGE_MAX_TURN`` radians of turn);
        the first distance ``n`` where ≥ ``min_supporters`` patches agree (their surfaces within
        ``same_surface_th`` of one another, within ``same_surface_th + min(0.05·S·n, same_surface_th)``
        voxels of the continuation,
        no other sheet within that reach, the corner not folding onto the trace) is that cell's
        bridge. Only the shortest bridges found are made — the far corner on the patches, the cells
        between on the arc (unsupported: low support in QA) — and patch-following growth takes over
        from there. Returns the corners added."""
        n_max = int(self.p.bridge_cells)
        if n_max <= 0:
            return 0
        H, W = st.valid.shape
        plans = []
        for r, c in fringe_cells(st.valid, cmin):
            for dr, dc in NBR4:
                back = [(r - k * dr, c - k * dc) for k in (1, 2, 3)]
                if all(0 <= a < H and 0 <= b < W and st.valid[a, b] for a, b in back):
                    key, seen = (r, c, dr, dc), self._n_valid(st, r, c, 3)
                    if self._no_bridge.get(key) == seen:
                        continue  # failed before and nothing changed around it since
                    plan = self._plan_bridge(st, r, c, dr, dc, [st.pos[k] for k in back], n_max)
                    if plan is not None:
                        plans.append(plan)
                    else:
                        self._no_bridge[key] = seen
        if not plans:
            return 0
        added = 0
        for n_min in sorted({pl[0] for pl in plans}):  # the shortest bridges that pass the checks
            for n, cells, qs, qf, locs in plans:
                if n == n_min and not any(st.valid[rc] for rc in cells):
                    added += self._commit_bridge(st, cells, qs, qf, locs)
            if added:
                break
        return added

    def _commit_bridge(self, st: TraceState, cells, qs, qf, locs) -> int:
        """Put a planned bridge into the trace, every corner checked like a grown one (spacing to its
        4-neighbours, no fold-over); all or nothing. Returns the corners added."""
        done = []
        for rc, q in list(zip(cells[:-1], qs)) + [(cells[-1], None)]:
            q, lc = self._onto_nearby(q) if q is not None else (qf, locs)
            if not self._geometry_ok(st, *rc, q):
                for d in done:
                    st.valid[d] = False
                    st.locs.pop(d, None)
                    st.supporters.pop(d, None)
                return 0
            st.set_corner(*rc, q, lc)
            st.support[rc], st.gen[rc] = len(lc), st.generations
            done.append(rc)
        return len(done)

    def _onto_nearby(self, q: np.ndarray):
        """A bridged corner between the two sides: onto the patches (if any) whose surfaces pass within
        ``2·same_surface_th`` of the arc point and within ``same_surface_th`` of the closest of them;
        else left on the arc, unsupported. Returns ``(point, {patch: (row, col)})``."""
        th = self.p.same_surface_th
        near = self.ps.near(q, 2 * th)
        if len(near):
            d, P, L = self.ps.packed.closest_locs(q[None], near, 2 * th)
            d, P, L = d[0], P[0], L[0]
            if d.min() <= 2 * th:
                k = np.nonzero((d <= 2 * th) & (np.linalg.norm(P - P[d.argmin()], axis=1) <= th))[0]
                return P[k].mean(0), {int(near[j]): L[j].copy() for j in k}
        return q, {}

    def _plan_bridge(self, st: TraceState, r: int, c: int, dr: int, dc: int, back, n_max: int):
        """``(n, cells, points between, far point, far locs)`` of the shortest bridge from (r, c) in
        direction (dr, dc), or None. Where the wraps on both sides of the trace have patches, the
        bridge is carried by them (:mod:`vcd.trace.guide`: they follow the scroll's own curvature);
        only where they do not (the outermost wrap, the core) does it follow the circle through the
        last three corners, for at most ``BRIDGE_MAX_TURN`` radians of turn."""
        p1, p2, p3 = back
        path = self._guided_path(st, r, c, dr, dc, p1, p2, n_max + 1)
        if path:
            return self._plan_along(st, r, c, dr, dc, p1, path, min(n_max, len(path) - 1))
        a, b = p2 - p3, p1 - p2
        turn = math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b))  # per cell, radians
        n_arc = min(n_max, int(self.BRIDGE_MAX_TURN / max(turn, 1e-6)))
        path = [self._continue(p3, p2, p1, k + 1, r + k * dr if dc else None) for k in range(n_arc + 1)]
        return self._plan_along(st, r, c, dr, dc, p1, path, n_arc)

    def _plan_along(self, st: TraceState, r: int, c: int, dr: int, dc: int, p1, path, n_max: int):
        """The shortest bridge along the continuation points ``path`` (``path[k]``: ``k + 1`` cells
        beyond ``p1``, one more than ``n_max``): the first ``n`` where far patches agree with
        ``path[n - 1]`` and continue to ``path[n]``; or None. (A guide patch may be a far patch too:
        on a spiral the wrap beside the trace is the same sheet one turn on.)"""
        H, W = st.valid.shape
        for k in range(n_max):
            rk, ck = r + k * dr, c + k * dc
            if not (0 <= rk < H and 0 <= ck < W) or st.valid[rk, ck]:
                return None
            n = k + 1  # cells from p1
            q = path[k]
            slack = min(0.05 * self.S * n, self.p.same_surface_th)
            far = self._far_group(q, slack, p1, n)
            if far is None or not self._geometry_ok(st, rk, ck, far[0]):
                continue
            qf, locs = far
            # the far patches must continue the path one cell further too (same slope, not a crossing)
            q_next = path[k + 1] + (qf - q)
            ids = np.array(sorted(locs), np.int64)
            if (self.ps.packed.closest(q_next[None], ids, 2 * slack + self.p.same_surface_th)[0][0]
                    > 2 * slack + self.p.same_surface_th).sum() * 2 > len(ids):
                continue
            cells = tuple([(r + j * dr, c + j * dc) for j in range(n)])
            between = [path[j] + (j + 1) / n * (qf - q) for j in range(n - 1)]
            return n, cells, between, qf, locs
        return None

    def _guided_path(self, st: TraceState, r: int, c: int, dr: int, dc: int, p1, p2, n: int):
        """Up to ``n`` continuation points beyond ``p1`` carried by the wraps beside the trace
        (:func:`vcd.trace.guide.transport`); none if there is no guide or no normal."""
        rb, cb = r - dr, c - dc
        side = [st.pos[rb + s * dc, cb + s * dr] for s in (1, -1)
                if 0 <= rb + s * dc < st.valid.shape[0] and 0 <= cb + s * dr < st.valid.shape[1]
                and st.valid[rb + s * dc, cb + s * dr]]
        if not side:
            return []
        w = side[0] - p1 if len(side) == 1 else side[0] - side[1]
        n1 = np.cross(p1 - p2, w)
        if np.linalg.norm(n1) < 1e-9:
            return []
        n1 /= np.linalg.norm(n1)
        th = self.p.same_surface_th
        reach = max(4 * th, min(2 * self.S, 80.0))
        own = set(st.locs.get((rb, cb), {}))
        cand = np.array([t for t in self.ps.near(p1, reach) if t not in own], np.int64)
        guides = find_guides(self.ps.packed, cand, p1, n1, th, reach)
        if not guides:
            return []
        path = transport(self.ps.packed, guides, p1, p2, n1, self.S, n, self.kcell, keep_z=dc != 0)
        if path and dc:
            for k, q in enumerate(path):
                q[2] = self.z_of_row(r)  # a row is a z level
        return path

    def _continue(self, p3, p2, p1, n: int, row: int | None) -> np.ndarray:
        q = _arc_extrapolate(p3, p2, p1, n)
        if row is not None:  # along a row: z is the row's level
            q[2] = self.z_of_row(row)
        return q

    def _far_group(self, q: np.ndarray, slack: float, p1: np.ndarray, n: int):
        """The largest group of ≥ ``min_supporters`` patches whose surfaces pass within
        ``same_surface_th + slack`` voxels of ``q`` and within ``same_surface_th`` of one another,
        ``n`` cells (±40 %) from ``p1``: ``(their mean point, {patch: (row, col)})`` or None."""
        th = self.p.same_surface_th
        near = self.ps.near(q, th + slack)
        if len(near) < self.p.min_supporters:
            return None
        d, P, L = self.ps.packed.closest_locs(q[None], near, th + slack)
        hit = np.nonzero(d[0] <= th + slack)[0]
        if len(hit) < self.p.min_supporters:
            return None
        P, L, ids = P[0, hit], L[0, hit], near[hit]
        gap = np.linalg.norm(P[:, None] - P[None], axis=-1)
        i = int(np.argmax((gap <= th).sum(1)))
        grp = np.nonzero(gap[i] <= th)[0]
        if len(grp) < self.p.min_supporters:
            return None
        qf = P[grp].mean(0)
        if (np.linalg.norm(P - qf, axis=1) > 2 * th).any():
            return None  # another sheet within reach too: ambiguous, do not bridge
        if not 0.6 * n * self.S <= np.linalg.norm(qf - p1) <= 1.4 * n * self.S:
            return None
        return qf, self._attach(qf, {int(ids[g]): L[g].copy() for g in grp})
