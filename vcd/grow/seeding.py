"""Where to start a patch: random seeds on the prediction, and expansion starts on existing patches.

Random seeding works on any volume size (VC3D needed every dimension > 384): a uniformly random
voxel, then a walk of up to 128 voxels along a random direction until the prediction is ≥ 128;
places an existing patch already covers (within 2 voxels) are skipped. Expansion visits patches
fewest-links first and tries start points on them — a third random interior grid points, two thirds
walked in from the patch's edge — until one is covered by fewer than ``tgt_overlap_count - 1``
patches; when none is, the collection is saturated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats.overlaps import link_sets
from ..formats.tifxyz import read_surface
from ..formats.volume import ChunkCache
from ..kernels.surfsearch import OVERLAP_TOL, SurfaceSearch
from .linking import PatchIndex


def covering_count(point, paths_dir: Path, index: PatchIndex, cache: dict, limit: int = 10**9) -> int:
    """How many patches of ``index`` pass within 2 voxels of ``point`` (x, y, z)."""
    p = np.asarray(point, dtype=np.float64)
    n = 0
    for name in index.candidates([p, p]):
        if name not in cache:
            try:
                cache[name] = SurfaceSearch.from_points(read_surface(paths_dir / name).points)
            except FormatError:
                cache[name] = None
        s = cache[name]
        if s is not None and s.distance(p[None])[0] <= OVERLAP_TOL:
            n += 1
            if n >= limit:
                break
    return n


def random_seed_point(pred: ChunkCache, rng: np.random.Generator, paths_dir: Path | None = None,
                      max_tries: int = 1000, threshold: int = 128):
    """A random point (x, y, z) on the prediction not yet covered by a patch, or None."""
    shape_zyx = pred.array.shape
    index = PatchIndex(paths_dir).refresh() if paths_dir is not None and paths_dir.is_dir() else None
    cache: dict = {}
    steps = np.arange(0, 129, dtype=np.float64)
    for _ in range(max_tries):
        start = rng.uniform([0, 0, 0], [shape_zyx[2] - 1, shape_zyx[1] - 1, shape_zyx[0] - 1])
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        ray = start[None] + steps[:, None] * d[None]
        inside = np.all((ray >= 0) & (ray <= np.array([shape_zyx[2], shape_zyx[1], shape_zyx[0]]) - 1), axis=1)
        ray = ray[inside.cumprod().astype(bool)]
        if len(ray) == 0:
            continue
        vals = pred.sample(np.round(ray))
        hit = np.nonzero(vals >= threshold)[0]
        if len(hit) == 0:
            continue
        p = np.round(ray[hit[0]])
        if index is not None and covering_count(p, paths_dir, index, cache, limit=1) > 0:
            continue
        return p
    return None


def expansion_start(paths_dir: Path, pred: ChunkCache, rng: np.random.Generator, tgt_overlap_count: int,
                    tries_per_patch: int = 10, threshold: int = 128):
    """(point, source patch name, covering count) for the next expansion, or None if saturated."""
    index = PatchIndex(paths_dir).refresh()
    names = list(index.names)
    rng.shuffle(names)
    # patches with fewer links first (VC3D's choice), but a well-linked patch can still have an
    # uncovered edge: the start point's own coverage decides saturation
    sets = link_sets(paths_dir)
    links = {n: len(sets.get(n, ())) for n in names}
    names.sort(key=lambda n: min(links[n], tgt_overlap_count))
    cache: dict = {}
    for name in names:
        try:
            surf = read_surface(paths_dir / name)
        except FormatError:
            continue
        valid = np.argwhere(surf.valid)
        if len(valid) == 0:
            continue
        for attempt in range(tries_per_patch):
            if attempt % 3 == 0:
                r, c = valid[rng.integers(len(valid))]
                p = surf.points[r, c].astype(np.float64)
                if pred.sample(np.round(p)[None])[0] < threshold:
                    continue
            else:
                p = _walk_in_from_edge(surf, pred, rng, threshold)
                if p is None:
                    continue
            n = covering_count(p, paths_dir, index, cache, limit=tgt_overlap_count)
            if n < tgt_overlap_count - 1:
                return p, name, n
    return None


def _walk_in_from_edge(surf, pred: ChunkCache, rng, threshold: int):
    """From a random border point of the valid area, walk toward the centre until 5 consecutive
    grid points are on the prediction; return the last of them."""
    v = surf.valid
    rows, cols = v.shape
    side = rng.integers(4)
    if side < 2:
        r = 0 if side == 0 else rows - 1
        c = int(rng.integers(cols))
        dr, dc = (1 if side == 0 else -1), 0
    else:
        c = 0 if side == 2 else cols - 1
        r = int(rng.integers(rows))
        dr, dc = 0, (1 if side == 2 else -1)
    run = 0
    while 0 <= r < rows and 0 <= c < cols:
        if v[r, c] and pred.sample(np.round(surf.points[r, c].astype(np.float64))[None])[0] >= threshold:
            run += 1
            if run >= 5:
                return surf.points[r, c].astype(np.float64)
        else:
            run = 0
        r += dr
        c += dc
    return None
