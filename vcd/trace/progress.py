"""What a running trace reports: corners, corners per second, and a share of a known target.

A trace can only grow where the patches linked (transitively, via ``overlapping.json``) to its seed
lie, and at most ``max_width`` voxels wide. So its *target* is

.. math:: N = \\min\\big(A_{\\text{linked}} / S^2,\\; H \\cdot W_{\\max}\\big)

corners, where :math:`A_{\\text{linked}}` is the area (voxels²) of the union of the seed's linked
patches (overlaps counted once: per ``S``-voxel bin, the largest area any one patch puts there),
``S`` the trace cell (voxels), ``H`` the rows of the trace grid and :math:`W_{\\max}` the columns
``max_width`` allows. The trace grows in one direction, so :math:`N` is an upper bound: a trace that
ends before reaching it reports 100 % with its stop reason when it is done.

Messages read ``generation 40: 1200 corners (31% of <= 3900 reachable), 85 corners/s, 14 s``.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..formats.overlaps import linked_to

#: corners-per-second is measured over this many seconds of the run (the recent rate, not the mean)
RATE_WINDOW_S = 20.0


def union_area(grids, steps, cell: float) -> float:
    """Area (voxels²) of the union of surfaces: ``grids`` are ``(points [R, C, 3] (x, y, z) voxels,
    valid [R, C])`` pairs with grid spacing ``steps`` (voxels); per ``cell``-voxel bin the largest
    area any one surface puts there counts (overlapping patches describe the same sheet)."""
    keys, areas = [], []
    for (g, v), step in zip(grids, steps):
        k = max(1, int(cell / (2 * max(step, 1e-6))))  # about two samples per bin and direction
        pts = g[::k, ::k][v[::k, ::k]]
        if not len(pts):
            continue
        b = np.floor(pts / cell).astype(np.int64) + (1 << 20)
        key = (b[:, 0] << 42) | (b[:, 1] << 21) | b[:, 2]
        u, n = np.unique(key, return_counts=True)
        keys.append(u)
        areas.append(n * (k * step) ** 2)
    if not keys:
        return 0.0
    key, area = np.concatenate(keys), np.concatenate(areas).astype(np.float64)
    order = np.argsort(key, kind="stable")
    key, area = key[order], area[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(key))[0] + 1])
    return float(np.maximum.reduceat(area, starts).sum())


class TraceProgress:
    """Progress of one :class:`~vcd.trace.tracer.Tracer` run, sent to its ``progress(fraction, message)``."""

    def __init__(self, tracer):
        self.tracer = tracer
        self.t0 = time.monotonic()
        self.samples: deque = deque()
        ps, S = tracer.ps, float(tracer.S)
        comp = sorted(linked_to(ps.links, tracer.seed))
        steps = S / np.asarray(tracer.kcell, np.float64)
        area = union_area([(ps.search[i].grid, ps.search[i].valid) for i in comp], steps[comp], S)
        self.reachable = max(1, int(round(area / S ** 2)))
        self.max_cols = max(8, int(tracer.p.max_width / tracer.p.step))

    def target(self, st) -> int:
        """Corners the trace is heading for (see the module docstring)."""
        return max(1, min(self.reachable, st.valid.shape[0] * self.max_cols))

    def rate(self, corners: int) -> float:
        """Corners per second over the last :data:`RATE_WINDOW_S` seconds."""
        now = time.monotonic()
        self.samples.append((now, corners))
        while len(self.samples) > 2 and now - self.samples[1][0] > RATE_WINDOW_S:
            self.samples.popleft()
        t, c = self.samples[0]
        if now - t <= 0:
            return 0.0
        return (corners - c) / (now - t)

    def generation(self, st, gen: int, columns: int) -> None:
        n = int(st.valid.sum())
        tgt = self.target(st)
        rate = self.rate(n)
        frac = min(0.99, n / tgt)
        self.tracer.progress(frac, f"generation {gen}: {n} corners ({100 * n / tgt:.0f}% of <= {tgt} reachable), "
                                   f"{columns} columns, {rate:.0f} corners/s, {time.monotonic() - self.t0:.0f} s")

    def done(self, st) -> None:
        n = int(st.valid.sum())
        el = time.monotonic() - self.t0
        self.tracer.progress(1.0, f"done: {n} corners in {el:.0f} s ({n / max(el, 1e-6):.0f} corners/s); "
                                  f"{st.stop_reason or 'finished'}")


def trace_progress(tracer) -> TraceProgress:
    """The tracer's :class:`TraceProgress` (made on first use, kept on the tracer)."""
    tp = getattr(tracer, "_trace_progress", None)
    if tp is None:
        tp = tracer._trace_progress = TraceProgress(tracer)
    return tp
