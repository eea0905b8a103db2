"""The overlap job is the one linker: an expansion's source patch (``vcd_source_patch`` in meta.json)
is linked beside whatever the search finds (issue 17 item 5)."""

import numpy as np

from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import write_surface
from vcd.jobs import JobContext, overlap


def _grid(x0: float, z: float) -> np.ndarray:
    """A flat 6×8 grid, points (x, y, z) in voxels, 5-voxel spacing, starting at x = x0."""
    yy, xx = np.mgrid[0:6, 0:8].astype(np.float32)
    return np.stack([xx * 5 + x0, yy * 5 + 10, np.full_like(xx, z)], axis=-1)


def test_overlap_job_links_the_recorded_source_patch(tmp_path):
    a, b, c = "auto_grown_20250101000000001", "auto_grown_20250101000000002", "auto_grown_20250101000000003"
    write_surface(tmp_path / a, _grid(10, 20), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    write_surface(tmp_path / b, _grid(10, 60), {"source": "vcd_grow", "vcd_source_patch": a}, scale=[0.2, 0.2])
    write_surface(tmp_path / c, _grid(10, 21), {"source": "vcd_grow", "vcd_source_patch": "gone"}, scale=[0.2, 0.2])
    run = lambda seg: overlap.run({"paths": str(tmp_path), "segment": seg}, JobContext())["linked"]  # noqa: E731
    assert run(b) == [a]                      # 40 voxels apart: only the recorded source links them
    assert read_overlaps(tmp_path / a) == {b}  # both ways
    assert run(c) == [a]                      # a missing source is ignored; the search still finds a
    assert overlap.source_patches(tmp_path, a) == []
