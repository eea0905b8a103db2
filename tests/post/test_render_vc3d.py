"""Render parity with VC3D's ``vc_render_tifxyz`` (issue 15 item 7): size, pixel -> grid, normal orientation.

The side-by-side comparison with a VC3D build is ``bench/render_vs_vc3d.py``; here each rule is pinned
against a case whose answer is known from the rule itself.
"""

import math

import numpy as np
import pytest
import tifffile

from vcd.formats.tifxyz import read_surface, write_surface
from vcd.formats.volume import write_ome_zarr
from vcd.post.render import RenderGeometry, output_shape, render
from vcd.synth import load_truth


def _vc3d_size(rows, cols, sx, sy, scale, group):
    """VC3D's canvas: lround(n · SCALE · 2^-GROUP / surface scale), halves away from zero."""
    rs = scale * 2.0 ** -group
    return max(1, math.floor(rows * rs / sy + 0.5)), max(1, math.floor(cols * rs / sx + 0.5))


@pytest.mark.parametrize("rows,cols,sx,sy,scale,group", [
    (36, 97, 0.25, 0.25, 0.5, 2),   # 97 · 0.125 / 0.25 = 48.5: VC3D gives 49 (Python's round would give 48)
    (46, 220, 0.05, 0.05, 0.5, 1),  # the tutorial's arguments
    (30, 41, 0.2, 0.25, 1.0, 0),    # anisotropic grid
    (5, 7, 0.1, 0.1, 0.01, 3),      # tiny: at least one pixel
])
def test_output_size_is_vc3ds(tmp_path, rows, cols, sx, sy, scale, group):
    g = np.zeros((rows, cols, 3), np.float32)
    g[..., 0], g[..., 1], g[..., 2] = np.arange(cols)[None] / sx, 10.0, np.arange(rows)[:, None] / sy
    surf = read_surface(write_surface(tmp_path / "s", g, {"scale": [sx, sy]}))
    H, W, rs = output_shape(surf, scale, group)
    assert (H, W) == _vc3d_size(rows, cols, sx, sy, scale, group)
    assert rs == scale * 2.0 ** -group


def test_pixels_sample_the_canvas_centred_grid_position(tmp_path):
    """A ramp volume (value = x voxel) and a plane z = 40 whose column c lies at x = 8 + 4c: the centre
    layer's pixel X must read trunc(8 + 4 gx), gx = cols/2 + (X - (W-1)/2) · sx / render_scale."""
    x = np.arange(128, dtype=np.uint8)
    vol = write_ome_zarr(tmp_path / "ramp.zarr", np.broadcast_to(x, (80, 128, 128)).copy(), 7.91, n_levels=2)
    rows, cols = 12, 25
    g = np.zeros((rows, cols, 3), np.float32)
    g[..., 0], g[..., 1], g[..., 2] = 8 + 4 * np.arange(cols)[None], 20 + 4 * np.arange(rows)[:, None], 40
    seg = write_surface(tmp_path / "plane", g, {"scale": [0.25, 0.25]})
    for scale in (1.0, 0.7):
        r = render(vol.path, str(tmp_path / f"o{scale}" / "%02d.tif"), seg, scale, 0, 1)
        img = tifffile.imread(r["layers"][0])
        H, W = _vc3d_size(rows, cols, 0.25, 0.25, scale, 0)
        assert img.shape == (H, W)
        gx = cols / 2 + (np.arange(W) - (W - 1) / 2) * 0.25 / scale
        on = img[H // 2] > 0
        assert on.sum() > W // 2
        assert np.abs(img[H // 2][on].astype(int) - np.floor(8 + 4 * gx[on])).max() <= 1


def test_middle_layer_samples_the_sheet_at_vc3d_size(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 6.0, t.theta0 + 8.0, 20, 70, 4)
    seg = write_surface(tmp_path / "seg", g, {"scale": [0.25, 0.25]})
    r = render(medium_scroll / "volumes" / "synth_ct.zarr", str(tmp_path / "out" / "%02d.tif"), seg, 0.5, 1, 7)
    imgs = [tifffile.imread(p) for p in r["layers"]]
    assert imgs[0].shape == _vc3d_size(*g.shape[:2], 0.25, 0.25, 0.5, 1)
    means = [float(im[imgs[3] > 0].mean()) for im in imgs]
    assert int(np.argmax(means)) == 3 and means[3] > means[0] + 40 and means[3] > means[6] + 40, means


def _cylinder_volume(path, r_sheet=24.0, r_marker=20.0):
    """A bright sheet (200) on the cylinder r = r_sheet around the z axis through (x, y) = (48, 48), and a
    dimmer marker sheet (120) at r = r_marker, on its concave side; nothing outside."""
    z, y, x = np.mgrid[0:64, 0:96, 0:96].astype(np.float32)
    r = np.hypot(x - 48, y - 48)
    v = np.where(np.abs(r - r_sheet) < 1.5, 200, 0) + np.where(np.abs(r - r_marker) < 1.5, 120, 0)
    return write_ome_zarr(path, v.astype(np.uint8), 7.91, n_levels=1)


def _cylinder_grid(r=24.0, th0=0.3, th1=1.6, z0=8, z1=56, step=2.0):
    th = np.arange(th0, th1, step / r)
    zz = np.arange(z0, z1, step)
    g = np.zeros((len(zz), len(th), 3), np.float32)
    g[..., 0] = 48 + r * np.cos(th)[None]
    g[..., 1] = 48 + r * np.sin(th)[None]
    g[..., 2] = zz[:, None]
    return g


@pytest.mark.parametrize("handedness", ["theta_right", "theta_left"])
def test_positive_layers_go_to_the_probe_tiles_concave_side(tmp_path, handedness):
    """VC3D's rule: flip all normals if most of the probe tile's normals point away from the tile's point
    centroid. On a cylinder the centroid lies inside, so +k layers step inwards — onto the marker sheet
    4 voxels in — whichever way the grid's columns run (vcd used the grid's handedness before)."""
    vol = _cylinder_volume(tmp_path / "cyl.zarr")
    g = _cylinder_grid()
    if handedness == "theta_left":
        g = g[:, ::-1].copy()
    seg = write_surface(tmp_path / "seg", g, {"scale": [0.5, 0.5]})
    r = render(vol.path, str(tmp_path / "out" / "%02d.tif"), seg, 1.0, 0, 9)  # offsets -4 .. +4
    imgs = [tifffile.imread(p) for p in r["layers"]]
    on = imgs[4] > 0
    means = [float(im[on].mean()) for im in imgs]
    assert means[4] > 150, means            # the sheet itself
    assert 80 < means[8] < 150, means       # +4: the marker sheet on the concave side
    assert means[0] < 10, means             # -4: outside, empty
    geo = RenderGeometry(read_surface(seg), 1.0, 0)
    P, N = geo.tile(np.arange(geo.H), np.arange(geo.W))
    ok = ~np.isnan(N).any(-1)
    inward = np.einsum("...k,...k->...", N[ok][:, :2], np.array([48.0, 48.0]) - P[ok][:, :2])
    assert (inward > 0).all()
