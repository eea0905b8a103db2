"""Patches at points (VC3D's "filter by POIs") and masking around a point.

:func:`patches_at` returns the patches whose surface passes within ``radius`` voxels of *every*
given point (bbox pre-filter, then exact point-to-surface distance). :func:`mask_around` writes or
extends a patch's ``mask.tif`` (page 0, grid size, 0 = masked) with every grid point within
``radius`` voxels of a point masked — through the watcher, that triggers the retrace of the traces
that used the patch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats.tifxyz import read_mask_grid, read_surface, write_mask
from ..kernels.surfsearch import SurfaceSearch
from .linking import PatchIndex


def patches_at(paths_dir: str | os.PathLike, points, radius: float = 2.0) -> list[str]:
    """Names of the patches in ``paths_dir`` within ``radius`` voxels of every one of ``points`` (N×3,
    ``(x, y, z)`` voxels): the patches a POI lies on."""
    paths_dir = Path(paths_dir)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    index = PatchIndex(paths_dir).refresh()
    lo, hi = pts.min(0), pts.max(0)
    found = []
    for name in index.candidates([lo, hi], margin=radius):
        bb = index.boxes[index.names.index(name)]
        if not np.all((pts >= bb[0] - radius) & (pts <= bb[1] + radius)):
            continue
        try:
            s = SurfaceSearch.from_points(read_surface(paths_dir / name).points)
        except FormatError:
            continue
        if np.all(s.distance(pts) <= radius):
            found.append(name)
    return sorted(found)


def mask_around(surface_dir: str | os.PathLike, point, radius: float) -> int:
    """Mask grid points within ``radius`` voxels of ``point``; returns how many were newly masked."""
    surface_dir = Path(surface_dir)
    s = read_surface(surface_dir, apply_mask=False)
    rows, cols = s.shape
    keep = np.ones((rows, cols), bool)
    if (surface_dir / "mask.tif").exists():
        keep = read_mask_grid(surface_dir / "mask.tif", rows, cols)
    d = np.linalg.norm(s.points.astype(np.float64) - np.asarray(point, dtype=np.float64), axis=-1)
    hit = s.valid & (d <= radius) & keep
    keep &= ~hit
    write_mask(surface_dir, np.where(keep, 255, 0).astype(np.uint8))
    return int(hit.sum())
