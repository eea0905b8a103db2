"""Issue 15 item 5: per-vertex ``approval.tif`` (VC3D paints approvals per vertex): a uint8 image the
size of the patch grid, nonzero = approved."""

import numpy as np
import pytest
import tifffile

from vcd.errors import FormatError
from vcd.formats.tifxyz import read_approval, write_surface
from vcd.trace.patches import PatchSet


def _grid(rows=6, cols=8, z0=20.0):
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return np.stack([xx * 5 + 10, yy * 5 + 10, np.full_like(xx, z0)], axis=-1)


def _patch(tmp_path, name="auto_grown_20250101000000001"):
    d = tmp_path / "paths" / name
    write_surface(d, _grid(), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    return d


def test_approval_read_per_vertex(tmp_path):
    d = _patch(tmp_path)
    assert read_approval(d, 6, 8) is None
    img = np.zeros((6, 8), np.uint8)
    img[1:3, 2:5] = 255
    img[5, 7] = 1
    tifffile.imwrite(d / "approval.tif", img)
    appr = read_approval(d, 6, 8)
    assert appr.dtype == bool and appr.shape == (6, 8) and appr.sum() == 7 and appr[5, 7] and not appr[0, 0]
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[4, 1, 2] = 200  # a blue paint stroke is an approval too
    tifffile.imwrite(d / "approval.tif", rgb, photometric="rgb")
    assert np.argwhere(read_approval(d, 6, 8)).tolist() == [[4, 1]]


def test_approval_wrong_size_or_dtype_names_the_file_and_the_fix(tmp_path):
    d = _patch(tmp_path)
    tifffile.imwrite(d / "approval.tif", np.full((12, 16), 255, np.uint8))
    with pytest.raises(FormatError) as exc:
        read_approval(d, 6, 8)
    msg = str(exc.value)
    assert "approval.tif" in msg and "16×12" in msg and "8×6" in msg and "\n" not in msg
    tifffile.imwrite(d / "approval.tif", np.full((6, 8), 255, np.uint16))
    with pytest.raises(FormatError, match="8-bit"):
        read_approval(d, 6, 8)


def test_patch_loader_trusts_approved_vertices_only(tmp_path):
    d = _patch(tmp_path)
    img = np.zeros((6, 8), np.uint8)
    img[:3] = 255
    tifffile.imwrite(d / "approval.tif", img)
    ps = PatchSet.load(tmp_path / "paths")
    assert ps.any_approved and not ps.approved and ps.info[d.name]["approval_sha1"]
    assert ps.trusted(0, (1.2, 4.0)) and ps.trusted(0, (2.4, 7.0))
    assert not ps.trusted(0, (2.6, 4.0)) and not ps.trusted(0, (5.0, 0.0))
    tifffile.imwrite(d / "approval.tif", np.zeros((5, 5), np.uint8))  # wrong size: warned, patch kept
    msgs = []
    ps = PatchSet.load(tmp_path / "paths", warn=msgs.append)
    assert ps.names == [d.name] and not ps.any_approved
    assert len(msgs) == 1 and "approval.tif" in msgs[0] and d.name in msgs[0]
