"""Swapped arguments (a surface where a volume belongs, or the reverse) give one line naming the kind
and the argument order, exit non-zero, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vcd.formats.tifxyz import write_surface


def _vcd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, args)], capture_output=True, text=True)


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def vol_and_seg(medium_scroll, tmp_path):
    """The medium scroll's prediction volume and a small flat tifxyz surface inside it."""
    import numpy as np
    rows, cols = np.mgrid[0:20, 0:20].astype(np.float32)
    pts = np.stack([20 + cols * 2, 20 + rows * 2, np.full_like(rows, 40)], axis=-1)
    seg = write_surface(tmp_path / "paths" / "auto_grown_20260101000000000", pts, scale=[0.5, 0.5])
    return medium_scroll / "volumes" / "synth_pred.zarr", seg


def test_render_with_volume_and_segment_swapped(vol_and_seg, tmp_path):
    vol, seg = vol_and_seg
    line = _one_line(_vcd("render", seg, tmp_path / "out", vol, 1, 0, 3))
    assert f"{seg}: is a tifxyz surface, not a volume" in line and "argument order" in line
    assert "VOLUME OUTPUT SEGMENT" in line and "format: zarr" not in line and "\"zarr\"" not in line


def test_surface_without_format_key_is_still_named_a_surface(vol_and_seg, tmp_path):
    """x.tif/y.tif/z.tif alone make it a surface, whatever meta.json says."""
    import shutil
    vol, seg = vol_and_seg
    bare = tmp_path / seg.name
    shutil.copytree(seg, bare)
    meta = json.loads((bare / "meta.json").read_text())
    meta.pop("format")
    (bare / "meta.json").write_text(json.dumps(meta))
    line = _one_line(_vcd("render", bare, tmp_path / "out", vol, 1, 0, 3))
    assert "is a tifxyz surface, not a volume" in line


def test_volume_where_a_surface_belongs(vol_and_seg, tmp_path):
    vol, seg = vol_and_seg
    line = _one_line(_vcd("render", vol, tmp_path / "out", vol, 1, 0, 3))
    assert f"{vol}: is a zarr volume, not a tifxyz surface" in line and "argument order" in line
    line = _one_line(_vcd("to-obj", vol, tmp_path / "x.obj"))
    assert "is a zarr volume, not a tifxyz surface" in line
