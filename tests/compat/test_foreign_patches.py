"""Every surface VC3D loads as a patch is a patch here (issue 15 item 1)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import write_surface
from vcd.formats.volpkg import is_patch, list_patches


def _vcd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, args)], capture_output=True, text=True)


def test_foreign_patches_are_listed(two_foreign):
    vp, names, _ = two_foreign
    assert [p.name for p, _ in list_patches(vp / "paths")] == names


def test_traces_and_snapshots_stay_out(scroll_copy):
    pts = np.full((4, 4, 3), 10.0, np.float32)
    paths = scroll_copy / "paths"
    write_surface(paths / "auto_trace_20250101000000000", pts, {"source": "vc_grow_seg_from_segments"})
    write_surface(paths / "auto_grown_20250101000000003", pts, {"source": "vcd_trace"})
    write_surface(paths / "auto_grown_20250101000000004", pts, {"vc_grow_seg_from_segments_params": {}})
    write_surface(paths / "z_dbg_gen_00050", pts, {})
    assert list_patches(paths) == []
    # a checkpointed snapshot (tutorial: renamed, linked, tagged) is a superpatch
    snap = paths / "auto_grown_20250101000000004"
    assert is_patch(snap, {"format": "tifxyz", "bbox": [[0] * 3] * 2, "vc_grow_seg_from_segments_params": {},
                           "tags": {"approved": {}}})
    assert not is_patch(snap, {"format": "tifxyz", "source": "vc_grow_seg_from_seed"})  # no bbox


def test_foreign_patches_linked_and_found(two_foreign):
    vp, names, pts = two_foreign
    r = _vcd("seg-add-overlap", vp / "paths", vp / "paths" / names[1])
    assert r.returncode == 0, r.stderr
    assert read_overlaps(vp / "paths" / names[1]) == {names[0]}
    assert read_overlaps(vp / "paths" / names[0]) == {names[1]}
    # a vertex of the first patch outside the second one: only the first is found there
    grid = pts[0]
    rows, cols = grid.shape[:2]
    v = grid[rows // 2, 0]
    assert v[0] > 0
    r = _vcd("patches-at", vp / "paths", *v.tolist())
    assert r.returncode == 0, r.stderr
    assert names[0] in r.stdout and names[1] not in r.stdout
    # a vertex in the shared part: both
    v = pts[1][rows // 2, 1]
    r = _vcd("patches-at", vp / "paths", *v.tolist())
    assert names[0] in r.stdout and names[1] in r.stdout, r.stdout
