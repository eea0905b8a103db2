import math
import subprocess
import sys

import numpy as np

from vcd.synth import load_truth
from vcd.synth.score import coverage, score_surface
from vcd.formats.volume import open_volume


def test_scroll_layout_and_prediction_on_sheet(medium_scroll):
    t = load_truth(medium_scroll)
    assert t.n_wraps >= 3
    pred = open_volume(medium_scroll / "volumes" / "synth_pred.zarr")
    ct = open_volume(medium_scroll / "volumes" / "synth_ct.zarr")
    assert pred.shape == ct.shape == (96, 128, 128) and len(pred.levels) >= 2
    data = pred.levels[0].read_all()
    assert set(np.unique(data)) <= {0, 255}
    zz, yy, xx = np.nonzero(data)
    sel = np.random.default_rng(0).choice(len(zz), 2000, replace=False)
    d, _ = t.nearest(np.stack([xx[sel], yy[sel], zz[sel]], 1).astype(float))
    assert np.percentile(d, 99) <= 1.6  # thin prediction around the true sheet
    # CT is bright on the sheet and dark between wraps
    g = t.sample_grid(t.theta0 + 2, t.theta0 + 6, 20, 70, 4)
    v = g[..., 0] != -1
    on = ct.sampler().sample(g[v])
    assert on.mean() > 150


def test_scorer_zero_on_truth_and_detects_planted_jump(medium_scroll):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 1.5, t.theta0 + 7.5, 15, 80, 4)
    s = score_surface(g, t)
    assert s["mean_dist"] < 1e-3 and s["jumps"] == 0 and s["jump_free_fraction"] == 1.0
    assert 0.8 < s["wraps_covered"] < 1.1
    bad = g.copy()
    c0 = g.shape[1] // 2
    for i in range(g.shape[0]):
        for j in range(c0, g.shape[1]):
            if g[i, j, 0] != -1:
                _, th = t.nearest(g[i, j][None])
                bad[i, j] = t.point(th[0] + 2 * math.pi, g[i, j, 2])
    s2 = score_surface(bad, t)
    assert s2["jumps"] >= g.shape[0] - 2 and s2["mean_dist"] < 1e-3 and s2["jump_free_fraction"] < 0.75
    shifted = g.copy()
    shifted[..., 0] += 1.5 * (g[..., 0] != -1)
    assert 0.5 < score_surface(shifted, t)["mean_dist"] < 1.6
    assert 0 < coverage([g], t) < coverage([g, t.sample_grid(t.theta0, t.theta1, 0, 95, 3)], t)
    assert coverage([t.sample_grid(t.theta0, t.theta1, 0, 95, 3)], t) > 0.97


def test_cli_synth_and_info(tmp_path):
    out = tmp_path / "x.volpkg"
    r = subprocess.run([sys.executable, "-m", "vcd", "synth", str(out), "--shape", "48", "64", "64",
                        "--preset", "hard", "--no-ct"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "vcd", "info", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "synth_pred.zarr" in r.stdout
    (out / "volumes" / "synth_pred.zarr" / "meta.json").write_text("{")
    r = subprocess.run([sys.executable, "-m", "vcd", "info", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
