"""The tracer's many-surface point query (:class:`vcd.kernels.multisurface.PackedSurfaces`) against
brute force over every triangle, on crumpled random grids with holes, over many calls (the kernel keeps
scratch marks between calls, so a stale mark would show up as a missed quad in a later call)."""

import numpy as np
import pytest

from vcd.kernels.multisurface import PackedSurfaces
from vcd.kernels.pointsearch import point_triangle_dist2


def _crumpled_grid(rng, rows, cols, step):
    """A wavy, noisy (x, y, z) grid (voxels) with a random hole; returns (grid, valid)."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    o = rng.uniform(0, 40, 3)
    g = np.stack([o[0] + step * c + 3 * np.sin(0.7 * r + rng.uniform(0, 6)),
                  o[1] + 4 * np.cos(0.5 * c) + rng.normal(0, 1.0, r.shape),
                  o[2] + step * r + rng.normal(0, 0.8, r.shape)], -1)
    valid = np.ones((rows, cols), bool)
    r0, c0 = rng.integers(0, rows - 2), rng.integers(0, cols - 2)
    valid[r0:r0 + 2, c0:c0 + 3] = False
    return g, valid


def _brute(grid, valid, q):
    best = np.inf
    for r in range(grid.shape[0] - 1):
        for c in range(grid.shape[1] - 1):
            if valid[r:r + 2, c:c + 2].all():
                for tri in ((grid[r, c], grid[r, c + 1], grid[r + 1, c]),
                            (grid[r + 1, c + 1], grid[r + 1, c], grid[r, c + 1])):
                    best = min(best, point_triangle_dist2(q[0], q[1], q[2], *tri))
    vv = grid[valid]  # a valid vertex of an incomplete quad counts as a point
    return min(np.sqrt(best), np.sqrt(((vv - q) ** 2).sum(1)).min())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closest_matches_brute_force_over_many_calls(seed):
    rng = np.random.default_rng(seed)
    surfs = [_crumpled_grid(rng, int(rng.integers(4, 9)), int(rng.integers(4, 9)), float(rng.uniform(3, 12)))
             for _ in range(6)]
    ps = PackedSurfaces([g for g, _ in surfs], [v for _, v in surfs])
    d_max = 15.0
    for call in range(25):
        want = rng.choice(len(surfs), size=int(rng.integers(1, len(surfs) + 1)), replace=False)
        q = rng.uniform(-5, 110, (int(rng.integers(1, 6)), 3))
        d, pts, locs = ps.closest_locs(q, want, d_max)
        for i in range(len(q)):
            for j, s in enumerate(want):
                ref = _brute(*surfs[s], q[i])
                if ref <= d_max:
                    assert d[i, j] == pytest.approx(ref, abs=1e-9), (call, i, s)
                    assert np.linalg.norm(pts[i, j] - q[i]) == pytest.approx(d[i, j], abs=1e-9)
                    H, W = surfs[s][1].shape
                    assert -1e-9 <= locs[i, j, 0] <= H - 1 + 1e-9 and -1e-9 <= locs[i, j, 1] <= W - 1 + 1e-9
                else:
                    assert d[i, j] > d_max - 1e-9
