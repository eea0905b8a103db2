"""Bridging by the neighbouring wraps (:mod:`vcd.trace.guide`, issue 14 item 3), against ground truth.

On crushed, tilted spirals of the realistic family, truth patches of the wraps inside and outside a
sheet carry a continuation of that sheet 1-3 trace cells (20 voxels each) past a point where its own
patches would end. Every carried point must lie on the *same* wrap of the true sheet, within 3 voxels
(the reach in which the tracer looks for the far side's patches, which then place the corner) — at
many places of several family draws — and closer than a circle through the last corners (the
tracer's first guess), which is off by up to 11 voxels on these crushed sheets (printed).

Units: voxels; points (x, y, z); grids ``[row, col]``.
"""

import itertools
import math

import numpy as np
import pytest

from vcd.kernels.multisurface import PackedSurfaces
from vcd.synth.realistic import build_realistic
from vcd.trace.guide import find_guides, transport
from vcd.trace.bridge import _arc_extrapolate

CELL = 20.0   #: trace cell, voxels
GRID = 10.0   #: patch grid, voxels


def _sheet_patches(t, th: float, z: float, span: float = 140.0):
    """Truth patches (10-voxel grid) of the wraps one turn inside and outside angle ``th`` around
    slice ``z``, reaching ``span`` voxels of arc past it."""
    out = []
    for k in (-1, 1):
        a = th + 2 * math.pi * k
        r = max(t.radius(a, z), 1.0)
        out.append(t.sample_grid(a - 30.0 / r, a + span / r, z - 20.0, z + 20.0, GRID))
    return out


def _own_line(t, th: float, z: float):
    """Three trace corners p3, p2, p1 on the sheet, one cell apart, ending at angle ``th``."""
    pts, a = [], th
    for _ in range(3):
        pts.append(t.point(a, z))
        a -= CELL / max(t.radius(a, z), 1.0)
    return [np.asarray(p, float) for p in pts][::-1]


@pytest.mark.parametrize("draw", [3, 6, 8])
def test_neighbouring_wraps_carry_the_sheet_across_a_seam(draw):
    t = build_realistic((100, 192, 192), seed=draw)
    Z = t.shape[0]
    th_lo, th_hi = t.theta0 + 2.5 * math.pi, t.theta1 - 2.5 * math.pi
    carried, worst_arc, worst_guided = 0, 0.0, 0.0
    for th, z in itertools.product(np.linspace(th_lo, th_hi, 16), (Z / 2 - 15, Z / 2 + 15)):
        p3, p2, p1 = _own_line(t, th, z)
        if any(p[0] < 25 or p[1] < 25 or p[0] > t.shape[2] - 25 or p[1] > t.shape[1] - 25 for p in (p3, p2, p1)):
            continue
        grids = _sheet_patches(t, th, z)
        valids = [g[..., 0] != -1 for g in grids]
        packed = PackedSurfaces(grids, valids)
        n1 = np.cross(p1 - p2, np.asarray(t.point(th, z + 10.0)) - np.asarray(t.point(th, z - 10.0)))
        n1 /= np.linalg.norm(n1)
        guides = find_guides(packed, np.arange(len(grids)), p1, n1, 2.0, 40.0)
        if not guides:
            continue  # a neighbour ends here (the core, the volume's side): no bridge
        path = transport(packed, guides, p1, p2, n1, CELL, 3, np.full(len(grids), CELL / GRID), keep_z=True)
        if not path:
            continue
        d, a = t.nearest(np.array(path))
        expect = [th + (k + 1) * CELL / max(t.radius(th, z), 1.0) for k in range(len(path))]
        assert np.all(np.abs(a - np.array(expect)) < math.pi), (draw, th, a, expect)  # the same wrap
        worst_guided = max(worst_guided, float(d.max()))
        arc = np.array([_arc_extrapolate(p3, p2, p1, k + 1) for k in range(len(path))])
        worst_arc = max(worst_arc, float(t.nearest(arc)[0].max()))
        carried += 1
    print(f"draw {draw}: {carried} places, worst distance to the sheet: carried {worst_guided:.2f}, "
          f"circle {worst_arc:.2f} voxels")
    assert carried >= 4
    assert worst_guided <= 3.0, (worst_guided, worst_arc)
