"""Growth where wraps fuse (issue 27, item 1): the realistic generator's fused-zone family
(``fused_family=True``: background gap between the two bands 0-3 voxels, core arc 40-150 voxels,
height 30-100, sheet thickness 1-5, all drawn from the seed) swept from random draws. Seeds are put
where crossing is likeliest — on either wrap at a zone's centre and just beside its rim — and every
patch must stay on one wrap (0 jump edges against the truth). A seed on a band of two merged wraps
starts beside the zone instead (which wrap it is on cannot be told on the merged band); the wrap-change audit's counts reach
``vcd_grow_stats``.

Draws 1-6 were used while building the seed check and the audit; the done-when draws (5 spread seeds,
step 10, 60 generations, 192×256×256) were tuned on draws 1-5 and checked once on held-out draws
201-205 (heavy).
"""

import math

import numpy as np
import pytest

from vcd.formats.tifxyz import read_surface
from vcd.formats.volume import open_volume
from vcd.grow.distance import DistanceField
from vcd.grow.grower import grow_patch
from vcd.grow.params import GrowParams
from vcd.grow.run import point_rng, run_grow
from vcd.synth import load_truth, make_scroll
from vcd.synth import warp as w
from vcd.synth.score import score_surface

from .test_realistic import VOXELSIZE, spread_seeds


def zone_seeds(truth):
    """(name, (x, y, z)) seeds at each fused zone: on the inner and the outer wrap at its centre, and
    on the inner wrap just past its rim; only those inside the volume (8 voxels from its faces)."""
    Z, Y, X = truth.shape
    out = []
    for i, f in enumerate(truth.fused):
        th, s = f["theta"], f["s"]
        rim = th + 2.2 * f["extent_arc"] / w.base_rho(truth.P, th)
        for name, a in (("in", th), ("out", th + 2 * math.pi), ("rim", rim)):
            p = truth.point_s([a], [s])[0]
            if 8 < p[0] < X - 8 and 8 < p[1] < Y - 8 and 8 < p[2] < Z - 8:
                out.append((f"zone {i} {name} (gap {f['gap_vx']:.2f})", p))
    return out


def grow_at_zones(tmp_path, draw, shape=(96, 192, 192), step=10.0, generations=30, **knobs):
    """Grow from every zone seed of fused-family draw ``draw``; → [(name, GrowResult, score or None)]."""
    vp = make_scroll(tmp_path / f"f{draw}.volpkg", shape, preset="realistic", seed=draw, ct=False,
                     fused_family=True, **knobs)
    t = load_truth(vp)
    assert t.fused, "the family places fused zones"
    field = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    field.ensure_all()
    out = []
    for name, seed in zone_seeds(t):
        r = grow_patch(field, seed, step, generations, rng=point_rng(seed))
        out.append((name, r, score_surface(r.points, t) if r.n_corners else None))
    return out


def check_no_crossing(results):
    crossed = [(name, sc["jumps"], round(sc["jump_free_fraction"], 3)) for name, _, sc in results
               if sc is not None and sc["jumps"] > 0]
    assert not crossed, crossed
    assert sum(sc is not None and r.n_corners >= 30 for _, r, sc in results) >= 1, \
        [(n, r.reason) for n, r, _ in results]  # growth still happens beside the zones


@pytest.mark.parametrize("draw", [6])
def test_fused_family_patches_never_cross_to_another_wrap(tmp_path, draw):
    check_no_crossing(grow_at_zones(tmp_path, draw))


@pytest.mark.heavy
@pytest.mark.parametrize("draw", [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12])
def test_fused_family_sweep(tmp_path, draw):
    check_no_crossing(grow_at_zones(tmp_path, draw))


@pytest.mark.heavy
@pytest.mark.parametrize("thickness,gap", [(1.0, 0.0), (2.0, 0.0), (5.0, 0.0), (1.0, 1.0), (5.0, 3.0)])
def test_fused_family_extremes(tmp_path, thickness, gap):
    """The family's corners: thinnest and thickest sheets, bands touching and 3 voxels apart."""
    check_no_crossing(grow_at_zones(tmp_path, 21, fused_thickness_range=(thickness, thickness),
                                    fused_gap_range=(gap, gap)))


def test_seed_on_merged_band_starts_beside_it_and_the_audit_is_recorded(tmp_path):
    """An explicit seed on two merged wraps starts beside the zone, with a warning, and stays on one wrap;
    the wrap-change audit's counts are in ``vcd_grow_stats``."""
    vp = make_scroll(tmp_path / "m.volpkg", (96, 192, 192), preset="realistic", seed=6, ct=False,
                     fused_family=True, fused_gap_range=(0.0, 0.0))
    t = load_truth(vp)
    vol, paths = vp / "volumes" / "synth_pred.zarr", vp / "paths"
    params = GrowParams.from_dict({"generations": 15, "step_size": 10, "min_area_cm": 1e-6})
    seeds = dict(zone_seeds(t))
    merged = [p for name, p in seeds.items() if " in " in name]
    assert merged
    warnings = []
    res = run_grow(vol, paths, params, seed_point=merged[0], warn=warnings.append)
    assert any("fused band" in m for m in warnings), warnings
    assert res["written"] and res["stats"]["detail"].get("fused_seed_moved") == 1, res
    assert score_surface(read_surface(paths / res["written"]).points, t)["jumps"] == 0
    rim = [p for name, p in seeds.items() if " rim " in name]
    res = run_grow(vol, paths, params, seed_point=rim[0], warn=lambda m: None)
    assert res["written"], res
    assert set(res["stats"]["audit"]) == {"band_change_edges", "merged_corners", "offset_jump_corners", "cut_corners"}


def grow_done_when(tmp_path, draw, shape=(192, 256, 256)):
    """Issue 27's done-when run: 5 spread explicit seeds, step 10, 60 generations → [(cm², score)]."""
    vp = make_scroll(tmp_path / f"d{draw}.volpkg", shape, preset="realistic", seed=draw, ct=False,
                     fused_family=True)
    t = load_truth(vp)
    field = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    field.ensure_all()
    out = []
    for seed in spread_seeds(t):
        r = grow_patch(field, seed, 10.0, 60, rng=point_rng(seed))
        sc = score_surface(r.points, t) if r.n_corners else {"jumps": 0, "mean_dist": 0.0, "jump_free_fraction": 1.0}
        out.append((r.area_vx2 * (VOXELSIZE * 1e-4) ** 2, sc))
    return out


@pytest.mark.heavy
@pytest.mark.parametrize("draw", [1, 2, 3, 4, 5, 201, 202, 203, 204, 205])
def test_done_when_on_fused_family_draws(tmp_path, draw):
    """Median ≥ 0.02 cm², mean distance ≤ 1 voxel, ≥ 4 of 5 jump-free, every patch ≥ 95 % in its
    largest jump-free piece (draws 201-205 held out)."""
    res = grow_done_when(tmp_path, draw)
    assert np.median([a for a, _ in res]) >= 0.02, res
    assert max(sc["mean_dist"] for _, sc in res) <= 1.0, res
    assert sum(sc["jumps"] == 0 for _, sc in res) >= 4, res
    assert min(sc["jump_free_fraction"] for _, sc in res) >= 0.95, res
