"""Fixtures for compatibility tests: surfaces written as other tools write them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth


def foreign_patch(volpkg: Path, name: str, theta0: float, theta1: float, source: str | None,
                  step: float = 4.0) -> np.ndarray:
    """Write a true-sheet patch ``paths/<name>`` as another tool would (``source`` or no source).

    Returns its (x, y, z) grid (level-0 voxels)."""
    truth = load_truth(volpkg)
    z0, z1 = 20.0, truth.shape[0] - 20.0
    pts = truth.sample_grid(theta0, theta1, z0, z1, step)
    meta = {"area_cm2": 0.01}
    if source is not None:
        meta["source"] = source
    write_surface(volpkg / "paths" / name, pts, meta, scale=[1.0 / step, 1.0 / step])
    return pts


@pytest.fixture
def two_foreign(scroll_copy) -> tuple[Path, list[str], list[np.ndarray]]:
    """Two overlapping foreign patches on the true sheet: one from VC's grower, one without source."""
    truth = load_truth(scroll_copy)
    t0 = truth.theta0 + 0.6 * (truth.theta1 - truth.theta0)  # outer wraps: many columns per radian
    span = min(1.0, 0.3 * (truth.theta1 - truth.theta0))
    names = ["auto_grown_20250101000000001", "auto_grown_20250101000000002"]
    pts = [foreign_patch(scroll_copy, names[0], t0, t0 + span, "vc_grow_seg_from_seed"),
           foreign_patch(scroll_copy, names[1], t0 + 0.5 * span, t0 + 1.5 * span, None)]
    assert math.isfinite(span)
    return scroll_copy, names, pts
