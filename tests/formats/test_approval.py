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


def test_trace_provenance_records_the_approval_fingerprint(tmp_path):
    """Beside ``mask_sha1``, each used patch's provenance has ``approval_sha1``: the fingerprint of its
    ``approval.tif`` as read (null without one); an approval edit changes it."""
    from vcd.formats.provenance import read_provenance
    from vcd.formats.tifxyz import bitmap_sha1
    from vcd.synth import load_truth, make_scroll
    from tests.trace.conftest import STEP, add_patch, link_all
    from tests.trace.test_trace import trace

    vp = make_scroll(tmp_path / "a.volpkg", shape=(60, 128, 128), preset="easy", seed=3, ct=False)
    t = load_truth(vp)
    a = add_patch(vp, "auto_grown_00000000000000001", t.sample_grid(t.theta0 + 8.0, t.theta0 + 8.8, 10, 50, STEP))
    c = add_patch(vp, "auto_grown_00000000000000002", t.sample_grid(t.theta0 + 8.2, t.theta0 + 9.0, 10, 50, STEP))
    link_all(vp)
    shape = tifffile.imread(vp / "paths" / c / "x.tif").shape
    seen = set()
    for share in (0.0, 0.5):
        img = np.zeros(shape, np.uint8)
        img[:, :int(share * shape[1])] = 255
        tifffile.imwrite(vp / "paths" / c / "approval.tif", img)
        prov = read_provenance(vp / "traces" / trace(vp, a)["written"])
        pa, pc = prov["patches"][a], prov["patches"][c]
        assert list(pc)[:2] == ["mask_sha1", "approval_sha1"] and pa["approval_sha1"] is None
        assert pc["approval_sha1"] == bitmap_sha1(read_approval(vp / "paths" / c, *shape))
        seen.add(pc["approval_sha1"])
    assert len(seen) == 2
