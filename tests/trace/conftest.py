"""Patch collections sampled from a synthetic scroll's ground truth (so tracer tests need no grower)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth, make_scroll

from ..conftest import built_once
from .tiling import link as link_all  # noqa: F401 (used here and by other test modules)

STEP = 5.0
TRACE_PARAMS = {"step": 2, "src_step": 5, "consensus_default_th": 6, "inlier_base_threshold": 12,
                "snapshot_every": 50}


def add_patch(vp: Path, name: str, grid: np.ndarray) -> str:
    write_surface(vp / "paths" / name, grid, {"scale": [1 / STEP, 1 / STEP], "source": "vcd_grow"})
    return name


def truth_patches(vp: Path, n: int, seed: int = 0, size: float = 40.0) -> list[str]:
    t = load_truth(vp)
    Z = t.shape[0]
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        th = rng.uniform(t.theta0 + 0.5, t.theta1 - 1.0)
        z0 = rng.uniform(3, Z - size - 3)
        dth = size / max(t.radius(th, z0 + size / 2), 5.0)
        names.append(add_patch(vp, f"auto_grown_{i + 1:017d}", t.sample_grid(th, th + dth, z0, z0 + size, STEP)))
    return names


def seed_near(vp: Path, theta_rel: float) -> str:
    """The patch whose centre is closest to theta0 + theta_rel on the mid z level."""
    from vcd.formats.tifxyz import read_surface
    t = load_truth(vp)
    best, name = 1e9, None
    for p in sorted((vp / "paths").iterdir()):
        if not p.name.startswith("auto_grown_"):
            continue
        s = read_surface(p)
        _, th = t.nearest(s.points[s.valid])
        zc = s.points[s.valid][:, 2].mean()
        score = abs(np.median(th) - t.theta0 - theta_rel) + abs(zc - t.shape[0] / 2) / 50
        if score < best:
            best, name = score, p.name
    return name


def linked_truth_collection(root: Path, preset: str) -> Path:
    """An 80×160×160 scroll of ``preset`` with 320 linked 40-voxel truth patches."""
    vp = make_scroll(root / f"{preset}.volpkg", shape=(80, 160, 160), preset=preset, seed=4, ct=False)
    truth_patches(vp, 320, seed=1)
    link_all(vp)
    return vp


@pytest.fixture(scope="session")
def traced_collection(tmp_path_factory) -> Path:
    """A medium scroll (~4 wraps) with 320 linked truth patches, made once per run (read-only)."""
    return built_once(tmp_path_factory, "traced_medium", lambda d: linked_truth_collection(d, "medium")) / \
        "medium.volpkg"


@pytest.fixture
def collection_copy(traced_collection, tmp_path) -> Path:
    dst = tmp_path / "c.volpkg"
    shutil.copytree(traced_collection, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def hard_collection(tmp_path_factory) -> Path:
    """A *hard* scroll (11-voxel pitch, touching wraps, false bridges) with 320 linked truth patches."""
    return built_once(tmp_path_factory, "traced_hard", lambda d: linked_truth_collection(d, "hard")) / "hard.volpkg"
