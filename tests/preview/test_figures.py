"""Pictures people read (issue 16, item 5): each trace's qa.png and winding.png are enlarged to a
readable size, with a title, axes and a colour scale that are really drawn."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vcd.figure import nice_ticks, upscale
from vcd.formats.tifxyz import write_surface
from vcd.post.preview import read_layout
from vcd.post.winding import rainbow, write_winding
from vcd.synth import load_truth
from vcd.trace import qa


def rgb(png):
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def assert_readable(png, cmap, v0=0.0, v1=1.0):
    """Wide enough, a non-empty title area, and a colour bar whose pixels follow ``cmap``."""
    img, lay = rgb(png), read_layout(png)
    assert img.shape[1] >= 600 and lay["plot_box"][2] >= 600
    tx, ty, tw, th = lay["title_box"]
    title = img[ty:ty + th, tx:tx + tw]
    assert (np.abs(title - title[0, 0]).sum(-1) > 100).sum() > 200   # text is drawn there
    (cb,) = lay["colorbars"]
    x0, y0, w, h = cb["box"]
    bar = img[y0 + h // 2, x0:x0 + w]
    for frac in (0.02, 0.5, 0.98):  # the bar shows the colour map from v0 to v1
        want = np.asarray(cmap(np.array([v0 + (v1 - v0) * frac])), int).reshape(3)
        assert np.abs(bar[int(frac * (w - 1))] - want).max() <= 12, (frac, bar[int(frac * (w - 1))], want)
    assert cb["label"]
    return img, lay


def test_qa_png_is_enlarged_with_title_axes_and_colour_bar(tmp_path):
    q = np.zeros((27, 69), np.float32)
    q[10:14, 30:36] = 0.95      # a suspicious spot
    q[0, :] = -1                 # no corner
    png = tmp_path / "auto_trace_x" / "qa.png"
    png.parent.mkdir()
    qa.write_png(q, png)
    img, lay = assert_readable(png, qa.qa_colors)
    x0, y0, w, h = lay["plot_box"]
    k = lay["pixels_per_cell"]
    assert w == 69 * k and h == 27 * k and k >= 9           # nearest-neighbour, square cells
    at = lambda r, c: img[y0 + r * k + k // 2, x0 + c * k + k // 2]
    assert at(12, 33)[0] > 200 and at(12, 33)[1] < 60       # red: the spot
    assert at(20, 5)[1] > 200 and at(20, 5)[0] < 40          # green: fine
    assert at(0, 5).sum() == 0                               # black: no corner
    assert not list(png.parent.glob(".*tmp"))                # written atomically (no temp left)


def test_winding_png_is_enlarged_with_title_and_colour_bar(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 1.0, t.theta0 + 1.0 + 6 * math.pi, 10, 80, 4)
    seg = write_surface(tmp_path / "auto_trace_w", g, {"scale": [0.25, 0.25]})
    write_winding(seg)
    img, lay = assert_readable(seg / "winding.png", rainbow, 0.0, 0.999)
    x0, y0, w, h = lay["plot_box"]
    assert (w, h) == (g.shape[1] * lay["pixels_per_point"], g.shape[0] * lay["pixels_per_point"])
    row = img[y0 + h // 2, x0:x0 + w]
    assert len({tuple(c) for c in row}) > 20                 # the hue cycles along the row


def test_helpers():
    assert nice_ticks(-0.5, 127.5) == [0, 20, 40, 60, 80, 100, 120]
    big, k = upscale(np.zeros((40, 360, 3), np.uint8))
    assert k == 2 and big.shape == (80, 720, 3)


def test_slice_figure_has_axes_colour_bars_legend_and_the_trace_white_on_top(scroll_copy, tmp_path):
    from vcd.formats.overlaps import link
    from vcd.formats.tifxyz import read_surface
    from vcd.post.preview import count_colors, plane_segments, preview_slice

    from .test_preview import put
    vp = scroll_copy
    a = put(vp, "auto_grown_20250101000000001", 2.0, 4.0, 8, 88).name
    b = put(vp, "auto_grown_20250101000000002", 2.0, 4.0, 8, 88, step=5).name   # the same stretch of sheet
    link(vp / "paths", a, [b])
    tr = put(vp, "auto_trace_20250101000000009", 2.0, 4.0, 8, 88, root="traces", meta={"source": "vcd_trace"})
    png = tmp_path / "s.png"
    lay = preview_slice(vp, png, axis="z", index=48, color_by="overlaps")
    img = rgb(png)
    assert img.shape[1] >= 600 and lay["traces"] == [tr.name] and set(lay["patches"]) == {a, b}
    # the trace is drawn white on top of the patches that run along it
    x0, y0, w, h = lay["slice_box"]
    f = lay["factor"]
    seg = plane_segments(read_surface(tr).points, "z", 48).reshape(-1, 3)
    px = np.round((seg[:, 0] + 0.5) * f - 0.5).astype(int)
    py = np.round((seg[:, 1] + 0.5) * f - 0.5).astype(int)
    on = img[y0 + py, x0 + px]
    assert len(on) > 20 and (on == 255).all(-1).mean() >= 0.95
    # colour bars: the CT grey scale and the links scale (0 .. tgt_overlap_count)
    grey, links = lay["colorbars"]
    assert "uint8" in grey["label"] and "links" in links["label"] and links["v1"] == lay["tgt_overlap_count"]
    bx, by, bw, bh = links["box"]
    assert np.abs(img[by + bh // 2, bx + 1] - count_colors(np.array([0.0]), 20)[0]).max() <= 12
    assert np.abs(img[by + bh // 2, bx + bw - 2] - count_colors(np.array([20.0]), 20)[0]).max() <= 12
    gx, gy, gw, gh = grey["box"]
    row = img[gy + gh // 2, gx:gx + gw]
    assert (np.ptp(row, axis=-1) == 0).all() and row[-1, 0] > row[0, 0] + 150   # black → light grey
    # title, axis labels (left of and below the slice) and the legend are really drawn
    for x, y, ww, hh in (lay["title_box"], [0, y0, x0 - 2, h], [x0, y0 + h + 2, w, 30], lay["legend_box"]):
        part = img[y:y + hh, x:x + ww]
        assert (np.abs(part - np.array([20, 20, 20])).sum(-1) > 150).sum() > 50, (x, y, ww, hh)


def test_density_and_trace_figures_have_titles_and_colour_bars(scroll_copy, tmp_path):
    from vcd.post.preview import heat, preview_density, preview_trace, under_colors

    from .test_preview import _make_trace, put
    vp = scroll_copy
    ps = [put(vp, f"auto_grown_2025010100000000{i}", 2.5 + i, 4.0 + i, 15, 65).name for i in range(2)]
    lay = preview_density(vp, tmp_path / "d.png", tgt=4)
    img = rgb(tmp_path / "d.png")
    counts, under = lay["colorbars"]
    for cb, cmap in ((counts, lambda v: heat(v / 4)), (under, under_colors)):
        x0, y0, w, h = cb["box"]
        for frac in (0.02, 0.98):
            want = cmap(np.array([cb["v0"] + frac * (cb["v1"] - cb["v0"])]))[0]
            assert np.abs(img[y0 + h // 2, x0 + int(frac * (w - 1))] - want).max() <= 12
    assert "patches per 8-voxel bin" in counts["label"] or "patches per" in counts["label"]
    assert lay["stats"]["below_target_fraction"] == 1.0   # no links yet: every patch is below target
    tr = _make_trace(vp, ps)
    lay = preview_trace(tr, tmp_path / "q.png", qa=True)
    assert lay["image_box"][2] >= 600 and lay["unit"] == "trace cells" and lay["colorbars"]
    tx, ty, tw, th = lay["title_box"]
    title = rgb(tmp_path / "q.png")[ty:ty + th, tx:tx + tw]
    assert (np.abs(title - np.array([20, 20, 20])).sum(-1) > 150).sum() > 200
