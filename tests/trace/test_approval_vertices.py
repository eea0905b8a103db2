"""Issue 15 item 5: per-vertex approvals (``approval.tif``) are trusted like an ``approved`` patch,
but only where painted: the trace follows a lone approved patch through its approved vertices and
stops where the approvals end."""

import json

import numpy as np
import tifffile

from vcd.formats.tifxyz import read_surface
from vcd.synth import load_truth, make_scroll

from .conftest import STEP, add_patch, link_all
from .test_trace import theta_span, trace


def _approve_columns(patch_dir, share: float) -> None:
    shape = tifffile.imread(patch_dir / "x.tif").shape
    img = np.zeros(shape, np.uint8)
    img[:, :int(round(share * shape[1]))] = 255
    tifffile.imwrite(patch_dir / "approval.tif", img)


def test_approved_vertices_are_trusted_only_where_painted(tmp_path):
    vp = make_scroll(tmp_path / "a.volpkg", shape=(60, 128, 128), preset="easy", seed=3, ct=False)
    t = load_truth(vp)
    # two overlapping patches near the seed, then a single long patch: only one supporter beyond
    a = add_patch(vp, "auto_grown_00000000000000001", t.sample_grid(t.theta0 + 8.0, t.theta0 + 8.8, 10, 50, STEP))
    add_patch(vp, "auto_grown_00000000000000002", t.sample_grid(t.theta0 + 8.2, t.theta0 + 9.0, 10, 50, STEP))
    c = add_patch(vp, "auto_grown_00000000000000003", t.sample_grid(t.theta0 + 8.4, t.theta0 + 11.5, 10, 50, STEP))
    link_all(vp)
    his = {}
    for share in (0.0, 0.5, 1.0):
        _approve_columns(vp / "paths" / c, share)
        res = trace(vp, a)
        s = read_surface(vp / "traces" / res["written"])
        his[share] = theta_span(s.points, t)[1]
        meta = json.loads((vp / "traces" / res["written"] / "meta.json").read_text())
        assert meta.get("used_approved_segments", []) == ([c] if share else []), (share, meta)
    assert his[0.0] < 9.3 and his[1.0] > 10.5, his
    assert his[0.0] + 0.3 < his[0.5] < his[1.0] - 0.3, his
