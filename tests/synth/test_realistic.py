"""The realistic synthetic family: drawn knobs really show in the rendered prediction, and the truth is exact.

Volumes are (48, 96, 96) (z, y, x) voxels; every check measures the rendered uint8 prediction against the
truth (distances in voxels)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from vcd.grow.params import GrowParams
from vcd.synth import grow_params_for, load_truth, realistic_family
from vcd.synth.generate import build_truth, render_volumes
from vcd.synth.score import band_thickness, coverage, score_surface

SHAPE = (48, 96, 96)


def _render(seed, shape=SHAPE, **over):
    t = build_truth(shape, "realistic", seed=seed, **over)
    return t, render_volumes(t, ct=False)[0]


def _interior(t, spacing=3.0, margin=8.0, clear=0.0):
    """Sheet samples away from the volume faces, the core, the fused zones, with >= ``clear`` voxels to
    both neighbouring wraps: (points N×3, theta, unit normals)."""
    pts, th = t.sheet_samples(spacing, margin)
    z = pts[:, 2]
    classic = not hasattr(t, "gap_to_next")  # classic preset: wraps are >= pitch - 2 x waviness apart
    keep = (z > margin) & (z < t.shape[0] - 1 - margin) & (th > t.theta0 + (1 if classic else 2) * math.pi) & \
        (classic | (th < t.theta1 - 2 * math.pi))
    pts, th = pts[keep], th[keep]
    if getattr(t, "fused", None):
        far = np.linalg.norm(pts[:, None, :] - t.feature_points()["fused"][None], axis=2).min(1) > 40
        pts, th = pts[far], th[far]
    z = pts[:, 2]
    if classic:
        return pts, th, t.normals(th, z)
    ok = (t.gap_to_next(th, z) >= clear) & (t.gap_to_next(th - 2 * math.pi, z) >= clear)
    return pts[ok], th[ok], t.normals(th[ok], z[ok])


def _voxels(pred, n, rng, lo=170):
    zz, yy, xx = np.nonzero(pred >= lo)
    sel = rng.choice(len(zz), min(n, len(zz)), replace=False)
    return np.stack([xx[sel], yy[sel], zz[sel]], 1).astype(float)


def test_family_knobs_are_drawn_from_the_seed():
    fams = [realistic_family(s) for s in range(40)]
    assert realistic_family(7) == realistic_family(7) and fams[1] != fams[2]
    for f in fams:
        assert 1.0 <= f["thickness_range"][0] <= f["thickness_range"][1] <= 6.0
        assert 0.0 <= f["dropout"] <= 0.4 and 5.0 <= f["tilt_deg"] <= 15.0
        assert f["n_fused"] >= 1 and f["n_fragments"] >= 2 and f["n_holes"] >= 1
    assert {f["soft"] for f in fams} == {True, False}
    # wrap spacing around the scroll: normal minimum 4-8 voxels, radial maximum 14-25 voxels
    for s in range(10):
        t = build_truth(SHAPE, "realistic", seed=s)
        phi = np.linspace(0, 2 * math.pi, 361)
        g = 1 + t.params["ellipticity"] * np.cos(2 * (phi - t.params["phi_e"])) + \
            t.params["displacement"] * np.cos(phi - t.params["phi_d"])
        assert 3.9 <= t.pitch * g.min() and t.pitch * g.max() <= 25.01 and g.max() / g.min() > 1.4


@pytest.mark.parametrize("seed", [0, 7, 13, 19])
def test_family_draws_show_in_the_prediction(seed):
    """Each knob as drawn (not overridden): thickness, dropout share and fused zones are in the render."""
    t, pred = _render(seed, n_fragments=0, speckle=0.0)
    k = t.params
    d, th, s = t.nearest_full(_voxels(pred, 4000, np.random.default_rng(seed)))
    ht = t.half_thickness_s(th, s)
    assert (d <= ht + 1.0).all()
    assert 2 * ht.min() >= k["thickness_range"][0] - 1e-6 and 2 * ht.max() <= k["thickness_range"][1] + 1e-6
    full = _render(seed, n_fragments=0, speckle=0.0, dropout=0.0, n_holes=0)[1] >= 170
    no_holes = _render(seed, n_fragments=0, speckle=0.0, n_holes=0)[1] >= 170
    assert abs((1 - no_holes[full].mean()) - k["dropout"]) < 0.03
    assert len(t.fused) >= 1 and all(f["gap"] < f["thickness"] for f in t.fused)
    assert len(t.holes) == k["n_holes"]


@pytest.mark.parametrize("seed", [0, 4])
def test_truth_is_exact_under_the_deformation(seed):
    t = build_truth(SHAPE, "realistic", seed=seed)
    rng = np.random.default_rng(seed)
    th = rng.uniform(t.theta0 + 2 * math.pi, t.theta0 + 6 * math.pi, 400)
    z = rng.uniform(5, 42, 400)
    p = t.points(th, z)
    assert np.allclose(p[:, 2], z, atol=1e-6)  # point(theta, z) sits on world slice z
    d, th2 = t.nearest(p)
    assert d.max() < 1e-4 and np.abs(th2 - th).max() < 1e-4
    # off the sheet: Gauss-Newton agrees with a brute-force dense sample of the sheet (3 wraps) to << 0.1
    q = p[:30] + rng.normal(0, 2.5, (30, 3))
    d, th2 = t.nearest(q)
    for i in range(30):
        tt = th2[i] + np.concatenate([k * 2 * math.pi + np.linspace(-0.5, 0.5, 161) for k in (-1, 0, 1)])
        tt = tt[(tt >= t.theta0) & (tt <= t.theta1)]
        T, Zg = np.meshgrid(tt, q[i, 2] + np.linspace(-7, 7, 57))
        brute = np.linalg.norm(t.points(T, Zg) - q[i], axis=1).min()
        assert -0.01 < brute - d[i] < 0.05, (i, brute, d[i])
    assert t.wrap_of(th2).min() >= 0


def test_scorer_on_realistic_truth():
    t = build_truth(SHAPE, "realistic", seed=2, n_fused=0)  # no fused zone: a 1-voxel shift stays 1 voxel off
    g = t.sample_grid(t.theta0 + 3 * math.pi, t.theta0 + 5 * math.pi, 6, 42, 3)
    v = g[..., 0] != -1
    assert v.sum() > 100
    s = score_surface(g, t)
    assert s["mean_dist"] < 1e-3 and s["jumps"] == 0 and s["jump_free_fraction"] == 1.0
    d, th = t.nearest(g[v])
    bad = g.copy()
    half = np.zeros(v.shape, bool)
    half[:, g.shape[1] // 2:] = True
    sel = v & half
    bad[sel] = t.points(t.nearest(g[sel])[1] + 2 * math.pi, g[sel][:, 2])
    s2 = score_surface(bad, t)
    assert s2["jumps"] >= 5 and s2["mean_dist"] < 1e-3 and s2["jump_free_fraction"] < 0.9
    shifted = g.copy()
    shifted[v] += 1.0 * t.normals(th, g[v][:, 2])
    assert 0.95 < score_surface(shifted, t)["mean_dist"] < 1.05
    assert (t.wrap_at(g[v]) == t.wrap_of(th)).all()
    assert 0 < coverage([g], t) < coverage([t.sample_grid(t.theta0, t.theta1, 0, 47, 3)], t)


@pytest.mark.parametrize("thickness", [1, 2, 3, 4, 5])
def test_thickness_sweep_measured_along_the_normal(thickness):
    ht = thickness / 2
    for seed in (thickness, 20 + thickness):
        t, pred = _render(seed, half_thickness=ht, clean=True)
        pts, th, n = _interior(t, clear=2 * ht + 3)
        assert len(pts) > 100
        meas = band_thickness(pred, pts, n, reach=ht + 1.2)
        assert abs(meas.mean() - thickness) < 0.05 * thickness + 0.1, (seed, t.params["soft"], meas.mean())
        # every rendered voxel is within half_thickness + 1 of the true sheet
        d, _ = t.nearest(_voxels(pred, 3000, np.random.default_rng(seed)))
        assert d.max() <= ht + 1.0


@pytest.mark.parametrize("seed", [3, 8, 11])
def test_drawn_thickness_varies_along_the_sheet(seed):
    t, pred = _render(seed, clean=True)
    tmin, tmax = t.params["thickness_range"]
    pts, th, n = _interior(t, clear=tmax + 3)
    local = 2 * t.half_thickness_at(th, pts[:, 2])
    assert local.min() >= tmin - 1e-6 and local.max() <= tmax + 1e-6
    meas = band_thickness(pred, pts, n, reach=tmax / 2 + 1.2)
    assert abs(meas.mean() / local.mean() - 1) < 0.1
    lo, hi = local < np.percentile(local, 33), local > np.percentile(local, 67)
    drawn_step = local[hi].mean() - local[lo].mean()
    assert abs((meas[hi].mean() - meas[lo].mean()) - drawn_step) < 0.25 * drawn_step + 0.2
    # the rendered voxels stay within the local half thickness + 1 (soft: where the value reaches 170)
    d, th2, s2 = t.nearest_full(_voxels(pred, 3000, np.random.default_rng(1)))
    assert (d <= t.half_thickness_s(th2, s2) + 1.0).all()


@pytest.mark.parametrize("dropout", [0.0, 0.1, 0.2, 0.3, 0.4])
def test_dropout_sweep(dropout):
    for seed in (int(dropout * 50), 30 + int(dropout * 50)):
        _, full = _render(seed, clean=True)
        t, drop = _render(seed, clean=True, dropout=dropout)
        band = full >= 170
        share = 1.0 - (drop[band] >= 170).mean()
        assert abs(share - dropout) < 0.03, (seed, share)
        assert not (drop[~band] >= 170).any()  # dropout only removes
        if 0 < dropout <= 0.2:  # small blobs in the sheet: a few voxels across (voxel-weighted mean)
            lab, _ = ndimage.label(band & (drop < 170), np.ones((3, 3, 3)))
            vol = np.bincount(lab.ravel())[1:]
            area = (vol ** 2).sum() / vol.sum() / (2 * t.half_thickness)
            assert 2.0 <= 2 * math.sqrt(area / math.pi) <= 12.0, (seed, area)


def test_holes_are_empty_and_listed():
    t, pred = _render(5, clean=True, n_holes=3, soft=False)
    assert len(t.holes) == 3 and t.features["holes"] == t.holes
    for c in t.feature_points()["holes"]:
        x, y, z = np.rint(c).astype(int)
        if 2 <= z < SHAPE[0] - 2:
            assert pred[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2].max() == 0


@pytest.mark.parametrize("thickness,seed", [(2, 1), (3, 2), (4, 6), (3, 9)])
def test_fused_zones_are_one_band(thickness, seed):
    ht = thickness / 2
    t, pred = _render(seed, clean=True, n_fused=2, half_thickness=ht, soft=False)
    assert len(t.fused) >= 1
    for f in t.fused:
        assert f["gap"] < f["thickness"] == pytest.approx(thickness)
        # over the flat top (tens of voxels along the sheet) the gap to the next wrap stays < the thickness
        rho = t.r0 + t.pitch * (f["theta"] - t.theta0) / (2 * math.pi)
        ths = f["theta"] + np.linspace(-0.7, 0.7, 5) * f["extent_arc"] / rho
        ss = f["s"] + np.linspace(-0.7, 0.7, 5) * f["extent_s"]
        T, S = np.meshgrid(ths, ss)
        p = t.point_s(T, S)
        inside = np.all((p > 1) & (p < np.array(SHAPE[::-1]) - 2), axis=1)
        z = p[inside, 2]
        tt = T.ravel()[inside]
        gap = t.gap_to_next(tt, z)
        assert (gap < thickness).all() and 2 * f["extent_arc"] >= 20
        # the prediction is one band from the inner wrap to the outer one: no empty voxel between them
        n = t.normals(tt, z)
        steps = np.linspace(0, 1, 11)
        seg = p[inside][:, None, :] + steps[None, :, None] * (gap[:, None, None] * n[:, None, :])
        vox = np.rint(seg).astype(int).reshape(-1, 3)
        assert (pred[vox[:, 2], vox[:, 1], vox[:, 0]] >= 170).mean() > 0.97
    # elsewhere the wraps are separate bands
    pts, th, nrm = _interior(t, clear=0)
    gap = t.gap_to_next(th, pts[:, 2])
    mid = pts + nrm * (gap / 2)[:, None]
    vox = np.rint(mid).astype(int)
    ok = np.all((vox >= 0) & (vox < np.array(SHAPE[::-1])), axis=1) & (gap > thickness + 2)
    assert (pred[vox[ok, 2], vox[ok, 1], vox[ok, 0]] == 0).mean() > 0.95


def test_fragments_and_speckle_are_off_the_sheet():
    t, pred = _render(4, clean=True, n_fragments=4, speckle=2e-4, soft=False)
    fp = t.feature_points()["fragments"]
    assert len(fp) >= 2
    d, _ = t.nearest(fp)
    inside = np.all((fp >= 1) & (fp < np.array(SHAPE[::-1]) - 1), axis=1)
    vox = np.rint(fp[inside]).astype(int)
    assert (pred[vox[:, 2], vox[:, 1], vox[:, 0]] == 255).all() and (d > 1.5).all()
    d, _ = t.nearest(_voxels(pred, 20000, np.random.default_rng(0)))
    assert 0 < (d > 2.0).mean() < 0.05  # false positives exist, and are few


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tilt_is_measured_in_the_rendered_volume(seed):
    t, pred = _render(seed, clean=True, soft=False, twist_deg=0.0, waves=[])
    assert math.degrees(math.acos(t.axis[2])) == pytest.approx(t.params["tilt_deg"], abs=1e-6)
    # the axis is the direction the band's intensity gradients avoid (smallest structure-tensor eigenvector)
    f = ndimage.gaussian_filter(pred.astype(np.float32), 1.5)
    g = np.stack(np.gradient(f)[::-1], -1)[4:-4, 4:-4, 4:-4].reshape(-1, 3)
    axis = np.linalg.eigh(g.T @ g)[1][:, 0]
    assert math.degrees(math.acos(abs(axis[2]))) == pytest.approx(t.params["tilt_deg"], abs=1.5)
    assert math.degrees(math.acos(min(1.0, abs(axis @ t.axis)))) < 1.5


@pytest.mark.parametrize("seed", [0, 1])
def test_twisted_render_matches_its_truth(seed):
    t, pred = _render(seed, clean=True, soft=False, twist_deg=30.0)
    d_true, _ = t.nearest(_voxels(pred, 4000, np.random.default_rng(seed)))
    assert d_true.max() <= t.params["thickness_range"][1] / 2 + 1.0
    untwisted = build_truth(SHAPE, "realistic", seed=seed, clean=True, twist_deg=0.0)
    z = np.full(50, 44.0)
    th = np.linspace(t.theta0 + 4 * math.pi, t.theta0 + 5 * math.pi, 50)
    assert np.abs(t.points(th, z) - untwisted.points(th, z)).max() > 5  # twist moves the top slices


def test_soft_prediction_falls_off_across_the_band():
    t, pred = _render(6, clean=True, soft=True, half_thickness=1.5)
    vals = np.unique(pred)
    assert len(vals) > 50 and pred.max() == 255
    pts = _voxels(pred, 5000, np.random.default_rng(0), lo=1)
    d, _ = t.nearest(pts)
    v = pred[pts[:, 2].astype(int), pts[:, 1].astype(int), pts[:, 0].astype(int)]
    assert v[d < 0.5].mean() > v[(d > 1.5) & (d < 2.5)].mean() + 60
    assert (d[v >= 170] <= 1.5 + 1.0).all() and (d <= 1.5 + t.params["soft_width"] * 2 / 3 + 1.0).all()


def test_classic_presets_take_half_thickness():
    t = build_truth(SHAPE, "easy", seed=1, half_thickness=1.5)
    pred, _ = render_volumes(t, ct=False)
    pts, th, n = _interior(t, clear=6)
    assert abs(band_thickness(pred, pts, n, reach=2.7).mean() - 3.0) < 0.3
    assert "overrides" not in build_truth(SHAPE, "easy", seed=1).to_json()  # default truth file unchanged
    with pytest.raises(ValueError, match="unknown"):
        build_truth(SHAPE, "easy", seed=1, tilt_deg=5)
    with pytest.raises(ValueError, match="unknown"):
        build_truth(SHAPE, "realistic", seed=1, nonsense=5)


def test_grow_params_suit_the_scroll():
    for preset in ("easy", "medium", "hard", "realistic"):
        t = build_truth((160, 160, 160), preset, seed=1)
        p = GrowParams.from_dict(grow_params_for(t))
        assert 0.3 * t.pitch <= p.step_size <= 0.7 * t.pitch + 1
        assert p.generations * p.step_size >= 160
        vx2 = p.min_area_cm / (t.voxelsize * 1e-4) ** 2
        assert 100 <= vx2 <= 0.05 * 160 * 160 and p.min_area_cm < 0.3


def test_cli_realistic_with_overrides(tmp_path):
    out = tmp_path / "r.volpkg"
    r = subprocess.run([sys.executable, "-m", "vcd", "synth", str(out), "--shape", "40", "64", "64", "--preset",
                        "realistic", "--seed", "2", "--half-thickness", "1.5", "--param", "dropout=0.1",
                        "--param", "soft=false", "--no-ct"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    t = load_truth(out)
    assert type(t).__name__ == "RealisticTruth" and t.params["thickness_range"] == [3.0, 3.0]
    assert t.params["dropout"] == 0.1 and t.params["soft"] is False
    for name, mode in (("seed.json", "seed"), ("expand.json", "expansion")):
        d = json.loads((out / name).read_text())
        assert GrowParams.from_dict(d).mode == mode and d["min_area_cm"] < 0.01
    bad = tmp_path / "bad.volpkg"
    r = subprocess.run([sys.executable, "-m", "vcd", "synth", str(bad), "--shape", "40", "64", "64", "--preset",
                        "realistic", "--param", "wobble=3"], capture_output=True, text=True)
    assert r.returncode == 1 and "wobble" in r.stderr and "Traceback" not in r.stderr and not bad.exists()
