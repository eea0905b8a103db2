"""Growth on realistic predictions (issue 13): the ``realistic`` synth family, knobs drawn from seeds.

Crushed, tilted, twisted spirals whose sheets are 1-6 voxels thick (varying along the sheet), soft or
binary, 0-40 % missing in blobs plus large holes, with fused zones, false fragments and speckle. The
grower must stay on one wrap and on the sheet everywhere, and grow usable patches across dropout.

Family draws used to tune the grower: 1-12. Draws kept out of tuning and checked last: 13-16.
Measured (5 spread seeds, step 10, 60 generations, 128×256×256): median patch 0.041 / 0.053 / 0.035 /
0.056 / 0.026 / 0.059 / 0.050 / 0.047 / 0.034 / 0.045 / 0.054 / 0.048 cm² on draws 1-12, every patch
within 0.3 voxel of the sheet on average, at most one patch per draw with a jump. The draws with
34-40 % dropout (3-5-voxel bands riddled with blob holes: 5, 10, 12) pass since the band profile is
read on a disc of parallel lines (:mod:`vcd.kernels.sheetband`); seeds still fail to place a seed
quad there (two of five on draw 5, one on draw 10), so draw 5's median is the tightest (0.026).
Held-out draws 13-16 (39 / 23 / 39 / 32 % dropout), checked once after that tuning: 0.049 / 0.049 /
0.041 / 0.038 cm², no jump, mean distance ≤ 0.22 voxel.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from vcd.formats.tifxyz import read_surface
from vcd.formats.volpkg import create_volpkg
from vcd.formats.volume import open_volume, write_ome_zarr
from vcd.grow.distance import DistanceField
from vcd.grow.grower import grow_patch, local_frame
from vcd.grow.params import GrowParams
from vcd.grow.run import run_grow
from vcd.synth import load_truth, make_scroll
from vcd.synth.score import score_surface

VOXELSIZE = 7.91


def spread_seeds(truth, n=5, margin=30):
    """``n`` points on the true sheet spread over the scroll's wraps: mid-height, ``margin`` voxels
    inside the volume's sides, at evenly spaced quantiles of the unwrapped angle."""
    pts, th = truth.sheet_samples(4.0, margin=10.0)
    Z, Y, X = truth.shape
    ok = (pts[:, 2] > 0.35 * Z) & (pts[:, 2] < 0.65 * Z) & (pts[:, 0] > margin) & (pts[:, 0] < X - margin) & \
         (pts[:, 1] > margin) & (pts[:, 1] < Y - margin)
    cand = np.nonzero(ok)[0]
    cand = cand[np.argsort(th[cand])]
    return [pts[cand[int(q * (len(cand) - 1))]] for q in np.linspace(0.1, 0.9, n)]


def grow_family_draw(tmp_path, draw, shape=(128, 256, 256), step=10.0, generations=60, **overrides):
    """Grow from 5 spread seeds on family draw ``draw``; → list of (area cm², score)."""
    vp = make_scroll(tmp_path / f"r{draw}.volpkg", shape, preset="realistic", seed=draw, ct=False, **overrides)
    t = load_truth(vp)
    field = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    field.ensure_all()
    out = []
    for k, seed in enumerate(spread_seeds(t)):
        r = grow_patch(field, seed, step, generations, rng=np.random.default_rng(k))
        sc = score_surface(r.points, t) if r.n_corners else {"jumps": 0, "mean_dist": 0.0}
        out.append((r.area_vx2 * (VOXELSIZE * 1e-4) ** 2, sc))
    return out


def check_family(results):
    """Issue 13's bar: median patch ≥ 0.02 cm², mean ≤ 1 voxel on every patch, ≥ 4 of 5 jump-free."""
    areas = [a for a, _ in results]
    assert max(sc["mean_dist"] for _, sc in results) <= 1.0, results
    assert sum(sc["jumps"] == 0 for _, sc in results) >= 4, results
    assert np.median(areas) >= 0.02, areas


@pytest.mark.parametrize("draw", [pytest.param(1, marks=pytest.mark.heavy), 3])
def test_realistic_family_draws_grow_large_patches_on_one_wrap(tmp_path, draw):
    check_family(grow_family_draw(tmp_path, draw))


@pytest.mark.heavy
@pytest.mark.parametrize("draw", [2, 4, 5, 6, 7, 8, 9, 10, 11, 12])
def test_realistic_family_more_draws(tmp_path, draw):
    check_family(grow_family_draw(tmp_path, draw))


def test_random_seed_and_expansion_modes_make_patches_on_the_realistic_family(tmp_path):
    vp = make_scroll(tmp_path / "r.volpkg", (96, 192, 192), preset="realistic", seed=3, ct=False)
    t = load_truth(vp)
    vol, paths = vp / "volumes" / "synth_pred.zarr", vp / "paths"
    base = {"generations": 25, "step_size": 8, "min_area_cm": 0.001, "seed": 4}
    written = []
    for mode in ("seed", "expansion", "expansion"):
        res = run_grow(vol, paths, GrowParams.from_dict(dict(base, mode=mode)), warn=lambda m: None)
        assert res["written"], res
        s = read_surface(paths / res["written"])
        sc = score_surface(s.points, t)
        assert sc["jumps"] == 0 and sc["mean_dist"] <= 1.0, (mode, sc)
        assert s.meta["vcd_grow_stats"]["attempts"] > 0
        written.append(res["written"])
    assert len(set(written)) == 3


def test_seed_in_a_dropout_gap_snaps_and_says_so(tmp_path):
    """An explicit seed a few voxels off the prediction (in a hole) snaps onto the nearest surface."""
    vp = make_scroll(tmp_path / "r.volpkg", (96, 160, 160), preset="realistic", seed=3, ct=False, clean=True)
    t = load_truth(vp)
    seed = spread_seeds(t, n=1, margin=25)[0]
    field = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    field.ensure_around(seed[None], 20)
    n = local_frame(field, seed, 6.0)[2]
    warnings = []
    res = run_grow(vp / "volumes" / "synth_pred.zarr", vp / "paths",
                   GrowParams.from_dict({"generations": 10, "step_size": 8, "min_area_cm": 1e-5}),
                   seed_point=seed + 3.5 * n, warn=warnings.append)
    assert res["written"]
    assert any("moved" in w and "off the predicted surface" in w for w in warnings), warnings


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vcd", "grow", *map(str, args)], capture_output=True, text=True)


def test_volume_with_no_surface_is_one_line_and_exit_1(tmp_path):
    vp = create_volpkg(tmp_path / "empty.volpkg", name="empty")
    vol = vp.volumes_dir / "empty.zarr"
    write_ome_zarr(vol, np.zeros((64, 64, 64), np.uint8), VOXELSIZE, n_levels=1)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"generations": 5, "step_size": 5, "max_tries": 50}))
    for args in ((), (30, 30, 30)):
        r = _cli(vol, vp.paths_dir, params, *args)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "Fix:" in errors[0] and ("no uncovered predicted surface" in errors[0]
                                        or "no predicted surface within" in errors[0]), errors
    assert not any(vp.paths_dir.glob("auto_grown_*"))


def test_on_prediction_support_is_measured_and_enforced_when_asked(tmp_path):
    """VC3D's ``min_on_prediction_support`` / ``require_on_prediction_support``: the share of vertices on
    the prediction goes to meta.json; a patch under the minimum is not written when it is required."""
    vp = make_scroll(tmp_path / "r.volpkg", (96, 160, 160), preset="realistic", seed=3, ct=False, dropout=0.3)
    t = load_truth(vp)
    seed = spread_seeds(t, n=1, margin=25)[0]
    vol, paths = vp / "volumes" / "synth_pred.zarr", vp / "paths"
    base = {"generations": 20, "step_size": 8, "min_area_cm": 1e-5, "seed": 1}
    res = run_grow(vol, paths, GrowParams.from_dict(base), seed_point=seed, warn=lambda m: None)
    support = read_surface(paths / res["written"]).meta["on_prediction_support"]
    assert 0.5 < support < 1.0  # holes bridged: some vertices lie off the prediction
    strict = dict(base, require_on_prediction_support=True, min_on_prediction_support=min(1.0, support + 0.01))
    res = run_grow(vol, paths, GrowParams.from_dict(strict), seed_point=seed, warn=lambda m: None)
    assert res["written"] is None and res["stop"] == "off_prediction" and "min_on_prediction_support" in res["reason"], res
    assert GrowParams.from_dict({"require_on_prediction_support": "true"}).require_on_prediction_support is True
