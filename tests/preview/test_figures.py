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
