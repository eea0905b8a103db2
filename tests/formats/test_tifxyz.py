import json
import math
import os

import numpy as np
import pytest
import tifffile

from vcd.errors import FormatError
from vcd.formats.jsonio import vc_dumps
from vcd.formats.overlaps import link, read_overlaps
from vcd.formats.tifxyz import (read_mask_grid, read_surface, resize_nearest, set_tag, surface_area_vx2,
                                update_meta, write_mask, write_surface)


def grid(rows=12, cols=15, step=5.0):
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
    pts = np.stack([10 + c * step, 20 + r * step, 30 + 0 * r], -1).astype(np.float32)
    pts[0, 0] = -1
    return pts


def test_roundtrip_with_mask_tags_overlaps_channels(tmp_path):
    pts = grid()
    gens = np.arange(pts.shape[0] * pts.shape[1], dtype=np.uint16).reshape(pts.shape[:2])
    d = write_surface(tmp_path / "auto_grown_20250101000000000", pts,
                      {"scale": [0.2, 0.2], "source": "vcd_grow", "my_key": {"kept": True}},
                      channels={"generations": gens}, overlapping=["b", "a"])
    meta = json.loads((d / "meta.json").read_text())
    assert meta["uuid"] == d.name and meta["format"] == "tifxyz" and meta["type"] == "seg"
    assert meta["my_key"] == {"kept": True} and meta["channels"] == ["generations"]
    assert meta["scale"] == [0.20000000298023224, 0.20000000298023224]
    assert meta["bbox"] == [[10.0, 20.0, 30.0], [80.0, 75.0, 30.0]]
    assert (d / "meta.json").read_text() == vc_dumps(meta)  # VC-exact formatting
    s = read_surface(d, channels=True)
    np.testing.assert_array_equal(s.points, pts)
    np.testing.assert_array_equal(s.channels["generations"], gens)
    assert read_overlaps(d) == {"a", "b"}
    assert json.loads((d / "overlapping.json").read_text()) == {"overlapping": ["a", "b"]}
    # mask: mask out a block, at 5x the grid size as VC3D writes for patches
    keep = np.ones((12 * 5, 15 * 5), np.uint8) * 255
    keep[:25, :25] = 0
    write_mask(d, keep)
    with tifffile.TiffFile(d / "mask.tif") as tf:
        assert tf.pages[0].dtype == np.uint8 and tf.pages[0].compression == 5  # LZW
    s = read_surface(d)
    assert not s.valid[:5, :5].any() and s.valid[6:, 6:].all()
    # tags as VC3D stores them
    set_tag(d, "approved", user="alice")
    m = json.loads((d / "meta.json").read_text())
    assert m["tags"] == {"approved": {"user": "alice"}} and m["my_key"] == {"kept": True}
    set_tag(d, "defective")
    m = json.loads((d / "meta.json").read_text())
    assert "date" in m["tags"]["defective"] and "approved" in m["tags"]
    set_tag(d, "approved", on=False)
    assert set(read_surface(d).tags) == {"defective"}


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    d = write_surface(tmp_path / "s", grid(), {"scale": [1, 1]})
    with pytest.raises(FormatError, match="already exists"):
        write_surface(tmp_path / "s", grid(), {"scale": [1, 1]})
    with pytest.raises(ValueError):
        write_surface(tmp_path / "t", np.full((3, 3, 3), np.nan, np.float32), {"scale": [1, 1]})
    assert not (tmp_path / "t").exists()
    staging = tmp_path / ".vcd-tmp"
    assert staging.is_dir() and not any(staging.iterdir())  # nothing half-written left behind


def test_reads_vc_style_handmade_files(tmp_path):
    """Files as VC's OpenCV writer makes them: uncompressed float32 strips, legacy overlap dirs."""
    d = tmp_path / "paths" / "auto_grown_20250211031737772"
    d.mkdir(parents=True)
    pts = grid()
    pts[3, 3] = (5, 5, 0)  # z <= 0 -> invalid on load
    for i, c in enumerate("xyz"):
        tifffile.imwrite(d / f"{c}.tif", pts[..., i], rowsperstrip=1)
    (d / "meta.json").write_text(json.dumps({
        "bbox": [[10, 20, 30], [80, 75, 30]], "format": "tifxyz", "scale": [0.05000000074505806] * 2,
        "type": "seg", "uuid": d.name, "tags": {"approved": None}}, indent=4))
    (d / "overlapping").mkdir()
    (d / "overlapping" / "auto_grown_20250211031737999").touch()
    (d / "overlaps").mkdir()
    os.symlink("../../auto_grown_x", d / "overlaps" / "auto_grown_x")  # dangling symlink, tutorial style
    s = read_surface(d)
    assert s.has_tag("approved") and not s.has_tag("defective")
    assert not s.valid[3, 3] and not s.valid[0, 0] and s.valid.sum() == pts.shape[0] * pts.shape[1] - 2
    assert s.scale == (0.05000000074505806, 0.05000000074505806)
    assert read_overlaps(d) == {"auto_grown_20250211031737999", "auto_grown_x"}
    # linking keeps existing legacy dirs in sync and writes overlapping.json
    (tmp_path / "paths" / "auto_grown_new").mkdir()
    link(tmp_path / "paths", d.name, ["auto_grown_new"])
    assert (d / "overlapping" / "auto_grown_new").exists()
    assert read_overlaps(tmp_path / "paths" / "auto_grown_new") == {d.name}


def test_reads_vesuvius_style_tiled_lzw(tmp_path):
    d = tmp_path / "seg"
    d.mkdir()
    rng = np.random.default_rng(0)
    pts = (rng.random((300, 280, 3)) * 100 + 1).astype(np.float32)
    for i, c in enumerate("xyz"):
        tifffile.imwrite(d / f"{c}.tif", pts[..., i], tile=(256, 256), compression="lzw")
    (d / "meta.json").write_text(json.dumps({"uuid": "seg", "scale": [0.5, 0.25], "type": "seg",
                                             "format": "tifxyz", "area": 12.5}, indent=2))
    s = read_surface(d)
    np.testing.assert_array_equal(s.points, pts)
    assert s.scale == (0.5, 0.25)  # [x, y] order as in C++
    keep = np.ones((300, 280), np.uint8) * 255  # vesuvius writer: grid-size tiled LZW uint8 mask
    keep[:100] = 0
    tifffile.imwrite(d / "mask.tif", keep, tile=(256, 256), compression="lzw", photometric="minisblack")
    s = read_surface(d)
    assert not s.valid[:100].any() and s.valid[100:].all()


@pytest.mark.parametrize("problem,match", [
    ("no_meta", "meta.json is missing"), ("garbage_meta", "not valid JSON"), ("empty_meta", "is empty"),
    ("no_format", "not \"tifxyz\""), ("shape", "differ in shape"), ("int_tif", "not float"),
    ("truncated", "cannot be read"), ("nan", "NaN"),
])
def test_malformed_surfaces_name_the_file(tmp_path, problem, match):
    d = write_surface(tmp_path / "s", grid(), {"scale": [1, 1]})
    if problem == "no_meta":
        (d / "meta.json").unlink()
    elif problem == "garbage_meta":
        (d / "meta.json").write_text("{not json")
    elif problem == "empty_meta":
        (d / "meta.json").write_text("")
    elif problem == "no_format":
        update_meta(d, lambda m: m.pop("format"))
    elif problem == "shape":
        tifffile.imwrite(d / "y.tif", np.zeros((3, 3), np.float32))
    elif problem == "int_tif":
        tifffile.imwrite(d / "z.tif", np.zeros(grid().shape[:2], np.int32))
    elif problem == "truncated":
        raw = (d / "x.tif").read_bytes()
        (d / "x.tif").write_bytes(raw[: len(raw) // 3])
    elif problem == "nan":
        tifffile.imwrite(d / "z.tif", np.full(grid().shape[:2], np.nan, np.float32))
    with pytest.raises(FormatError, match=match) as ei:
        read_surface(d)
    assert str(d) in str(ei.value) and "Fix:" in str(ei.value)


def test_mask_rules(tmp_path):
    d = write_surface(tmp_path / "s", grid(10, 20), {"scale": [1, 1]})
    tifffile.imwrite(d / "mask.tif", np.ones((10, 10), np.uint8) * 255)  # wrong aspect ratio
    with pytest.raises(FormatError, match="aspect ratio"):
        read_surface(d)
    tifffile.imwrite(d / "mask.tif", np.ones((10, 20), np.uint16))
    with pytest.raises(FormatError, match="8-bit"):
        read_surface(d)
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, 20:] = 255
    tifffile.imwrite(d / "mask.tif", rgb, photometric="rgb")  # GIMP may save RGB: luminance used
    keep = read_mask_grid(d / "mask.tif", 10, 20)
    assert not keep[:, :10].any() and keep[:, 10:].all()


def test_resize_nearest_matches_opencv_mapping():
    img = np.arange(7 * 9).reshape(7, 9)
    out = resize_nearest(img, 3, 4)
    exp_r = [min(int(math.floor(i * (1 / (3 / 7)))), 6) for i in range(3)]
    exp_c = [min(int(math.floor(i * (1 / (4 / 9)))), 8) for i in range(4)]
    np.testing.assert_array_equal(out, img[np.ix_(exp_r, exp_c)])


def test_area():
    pts = grid(3, 3, step=2.0)
    pts[0, 0] = (10, 20, 30)
    assert surface_area_vx2(pts) == pytest.approx(16.0)
