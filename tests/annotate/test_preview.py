"""Previews are checked for content: drawn intersections lie on the sheet's pixels (issue 9)."""

import numpy as np
from PIL import Image
from scipy import ndimage

from vcd.formats.overlaps import link
from vcd.formats.volume import open_volume
from vcd.post.preview import density_preview, refresh_previews, slice_preview
from vcd.synth import load_truth

from ..daemon.test_daemon import put_patch, put_trace


def test_slice_intersections_lie_on_the_sheet_and_density_follows_patches(scroll_copy):
    vp = scroll_copy
    names = [put_patch(vp, f"auto_grown_2025010100000000{i}", 3.0 + i, 4.5 + i, 10, 85).name for i in range(4)]
    put_patch(vp, "auto_grown_20250101000000009", 3.2, 4.3, 10, 85)  # doubles coverage on one spot
    out = slice_preview(vp, "z", 48, volume="synth_pred.zarr", out=vp / "s.png", zoom=1)
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert Image.open(slice_preview(vp, "z", 48, out=vp / "big.png")).width == 640  # enlarged by default
    pred = open_volume(vp / "volumes" / "synth_pred.zarr").read_region_u8(48, 49, 0, 128, 0, 128)[0]
    drawn = (np.abs(img - pred[..., None]).sum(-1) > 0) & (np.ptp(img, axis=-1) > 0)  # coloured pixels
    assert drawn.sum() > 100
    near_sheet = ndimage.binary_dilation(pred > 0, iterations=2)
    assert near_sheet[drawn].mean() >= 0.95
    colours = {tuple(c) for c in img[drawn]}
    assert len(colours) >= 4  # one colour per patch
    link(vp / "paths", names[0], names[1:3])  # names[0] has 2 links (at target), the other 4 patches fewer
    dpng, frac = density_preview(vp, vp / "d.png", tgt=2)
    assert dpng.exists() and frac == 0.8  # the scheduler's share of patches below target
    put_trace(vp, "auto_trace_20250101000000010", names)
    outs = refresh_previews(vp)
    assert all(p.exists() and p.parent == vp / ".vcd" / "previews" for p in outs)
