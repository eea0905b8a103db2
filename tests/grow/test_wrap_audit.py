"""The wrap-change audit (issue 27): a patch that changes wrap is cut where it does, and the cut is
recorded in ``vcd_grow_stats["audit"]``.

Grids are the true sheet of a realistic scroll (no fused zone, no defects) sampled every ``step``
voxels; the "switched" grid moves half its columns onto the next wrap out (what a sheet jump does). The
audit (:func:`vcd.grow.grower.audit_grid`, the one the grower runs on every patch) must leave the clean
grid whole and cut the switched one back to one wrap; its wrap-offset test alone marks every switched
edge the band test misses (on 3-4 of these 6 grids the band test alone left 2-10 jump edges)."""

import math

import numpy as np
import pytest

from vcd.formats.volume import open_volume
from vcd.grow.distance import DistanceField
from vcd.grow.grower import audit_grid, grow_stats
from vcd.synth import load_truth, make_scroll
from vcd.synth.score import score_surface


@pytest.fixture(scope="module")
def clean_scroll(tmp_path_factory):
    vp = make_scroll(tmp_path_factory.mktemp("audit") / "a.volpkg", (96, 160, 160), preset="realistic", seed=3,
                     ct=False, clean=True, n_fused=0)
    field = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    field.ensure_all()
    return load_truth(vp), field


@pytest.mark.parametrize("step", [6.0, 10.0])
@pytest.mark.parametrize("k0", [3, 4, 5])
def test_the_audit_cuts_a_patch_where_it_changes_wrap(clean_scroll, step, k0):
    t, field = clean_scroll
    g = t.sample_grid(t.theta0 + k0 * math.pi, t.theta0 + (k0 + 1.2) * math.pi, 20, 76, step).astype(np.float64)
    v = g[..., 0] != -1
    keep, counts = audit_grid(field, g, step)
    assert keep[v].all() and counts["wrap_change_edges"] == 0 and counts["corners_cut"] == 0, counts
    switched = g.copy()
    sel = v & (np.arange(g.shape[1]) >= g.shape[1] // 2)[None]
    switched[sel] = t.points(t.nearest(g[sel])[1] + 2 * math.pi, g[sel][:, 2])
    assert score_surface(switched, t)["jumps"] >= 5
    keep, counts = audit_grid(field, switched, step)
    kept = np.where(keep[..., None], switched, -1)
    sc = score_surface(kept, t)
    assert sc["jumps"] == 0 and counts["wrap_change_edges"] > 0, counts
    assert keep.sum() >= 0.4 * v.sum() and counts["corners_cut"] == v.sum() - keep.sum()


def test_audit_counts_are_in_the_grow_stats():
    from vcd.grow.grower import GrowResult
    r = GrowResult(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.uint16), 0, 0, 0.0, "x", {}, 0,
                   audit={"band_change_edges": 2, "wrap_change_edges": 1, "corners_cut": 5})
    assert grow_stats(r)["audit"] == {"band_change_edges": 2, "wrap_change_edges": 1, "corners_cut": 5}
