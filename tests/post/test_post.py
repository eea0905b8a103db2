"""Winding, fusion, grounding, rendering, OBJ against ground truth (issue 6)."""

import math
import subprocess
import sys

import numpy as np
import tifffile

from vcd.formats.tifxyz import read_surface, write_surface
from vcd.post.fusion import fill_quadmesh, upscale_grounding
from vcd.post.obj import from_obj, to_obj
from vcd.post.render import render
from vcd.post.winding import write_winding
from vcd.synth import load_truth
from vcd.synth.score import score_surface


def three_wraps(t, z0=10, z1=80, step=4):
    return t.sample_grid(t.theta0 + 1.0, t.theta0 + 1.0 + 6 * math.pi, z0, z1, step)


def true_winding(t, pts):
    v = pts[..., 0] != -1
    _, th = t.nearest(pts[v])
    out = np.full(v.shape, np.nan)
    out[v] = th / (2 * math.pi)
    return out


def test_winding_monotone_with_true_span_even_with_masked_hole(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = three_wraps(t)
    for name, grid in (("plain", g), ("holed", g.copy())):
        if name == "holed":
            grid[5:12, 40:60] = -1
        d = write_surface(tmp_path / name, grid, {"scale": [0.25, 0.25]})
        r = write_winding(d)
        w = tifffile.imread(d / "winding.tif")
        tw = true_winding(t, grid)
        span_true = np.nanmax(tw) - np.nanmin(tw)
        assert abs(r["span_wraps"] - span_true) <= 0.1, (r, span_true)
        s = read_surface(d)
        med = np.array([np.median(w[s.valid[:, c], c]) for c in range(w.shape[1]) if s.valid[:, c].any()])
        assert np.all(np.diff(med) >= -1e-6)  # monotone along columns
        assert (d / "winding_vis.tif").exists() and (d / "winding.png").exists()


def test_fusion_fills_hole_on_the_sheet_and_handles_opposite_direction(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    a = t.sample_grid(t.theta0 + 9.0, t.theta0 + 12.0, 10, 80, 4)
    b = t.sample_grid(t.theta0 + 9.5, t.theta0 + 11.5, 15, 75, 4)[:, ::-1]  # traced the other way
    assert (a[..., 0] != -1).all() and a.shape[1] > 20
    hole = a.copy()
    hole[6:11, 8:16] = -1
    da = write_surface(tmp_path / "A", hole, {"scale": [0.25, 0.25]})
    db = write_surface(tmp_path / "B", b, {"scale": [0.25, 0.25]})
    write_winding(da)
    write_winding(db)
    r = fill_quadmesh({"trace_mul": 1}, [(str(da), str(da / "winding.tif"), 1.0), (str(db), str(db / "winding.tif"), 1.0)],
                      tmp_path)
    out = read_surface(r["written"])
    assert r["filled"] == 5 * 8 and r["snapped"] == 5 * 8
    d, _ = t.nearest(out.points[6:11, 8:16].reshape(-1, 3))
    assert d.max() <= 1.5
    assert score_surface(out.points, t)["jumps"] == 0
    assert r["alignment"][0]["sign"] == -1.0  # the other direction was detected
    w = tifffile.imread(out.path / "winding.tif")
    tw = true_winding(t, out.points)
    tw -= np.nanmin(tw)
    ww = w - w[out.valid].min()
    assert np.nanmax(np.abs(ww - tw)[out.valid]) < 0.1  # winding stays consistent through the fill
    # grounding back to source resolution lands on the traces
    g = upscale_grounding(r["written"], None, 2, [(str(da), None), (str(db), None)], tmp_path)
    hr = read_surface(g["written"])
    assert g["grounded_fraction"] > 0.9
    d2, _ = t.nearest(hr.points[hr.valid])
    assert d2.max() < 1.0


def test_render_peaks_on_the_centre_layer(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 6.0, t.theta0 + 8.0, 20, 70, 4)
    seg = write_surface(tmp_path / "seg", g, {"scale": [0.25, 0.25]})
    r = render(medium_scroll / "volumes" / "synth_ct.zarr", str(tmp_path / "out" / "%02d.tif"), seg, 1.0, 0, 9,
               processes=2)
    means = []
    for p in r["layers"]:
        img = tifffile.imread(p)
        with tifffile.TiffFile(p) as tf:
            assert tf.pages[0].is_tiled and tf.pages[0].compression == 5 and tf.is_bigtiff
        means.append(float(img[img > 0].mean()))
    assert int(np.argmax(means)) == 4, means
    assert means[4] > means[0] + 40 and means[4] > means[8] + 40
    assert (tmp_path / "out" / "preview.png").exists()


def test_obj_round_trip(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 2.0, t.theta0 + 4.0, 20, 60, 4)
    g[3, 4] = -1
    seg = write_surface(tmp_path / "seg", g, {"scale": [0.25, 0.25]})
    info = to_obj(seg, tmp_path / "seg.obj")
    text = (tmp_path / "seg.obj").read_text()
    assert text.count("\nvt ") == info["vertices"] and text.count("\nvn ") == info["vertices"]
    from_obj(tmp_path / "seg.obj", tmp_path / "back")
    back = read_surface(tmp_path / "back")
    s = read_surface(seg)
    assert back.points.shape == s.points.shape
    assert np.abs(back.points[s.valid] - s.points[s.valid]).max() <= 1e-4
    assert not back.valid[3, 4]


def test_cli_post_commands(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    seg = write_surface(tmp_path / "seg", three_wraps(t), {"scale": [0.25, 0.25]})

    def vcd(*a):
        return subprocess.run([sys.executable, "-m", "vcd", *map(str, a)], capture_output=True, text=True)
    r = vcd("winding", seg)
    assert r.returncode == 0 and "span" in r.stdout
    r = vcd("render", medium_scroll / "volumes" / "synth_ct.zarr", tmp_path / "layers", seg, 0.5, 1, 3)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "layers").glob("*.tif")) == ["00.tif", "01.tif", "02.tif"]
    r = vcd("to-obj", seg, tmp_path / "s.obj")
    assert r.returncode == 0 and (tmp_path / "s.obj").exists()
    r = vcd("render", medium_scroll / "volumes" / "synth_ct.zarr", tmp_path / "l2", seg, 1, 7, 3)
    assert r.returncode == 1 and "no level 7" in r.stderr
