"""Large linked patch collections without a volume: small patches cut from one long synthetic sheet.

The sheet is a wavy wall ``(x, y, z) = (u·step, y0 + A·sin(2π·u·step/λ), z0 + v·step)`` in level-0
voxels, for sheet coordinates ``u`` (along, ``0 … length_cells``) and ``v`` (up, ``0 … height_cells``)
in grid cells. A patch is the ``(cells+1) × (cells+1)`` vertex window of the sheet whose lower corner
is at an **even** cell ``(u0, v0)``; with ``cells`` odd (default 9), two windows either share at least
one cell (both offsets ``≤ cells − 1``: at least 2×2 common vertices, at distance 0) or are at least one
cell apart in ``u`` or ``v`` (then every point pair is ``≥ step`` voxels apart, because ``x`` and ``z``
grow by ``step`` per cell). So the overlaps are known exactly (:attr:`SynthCollection.pairs`) and vcd's
linking rule (a point within 2 voxels, ``kernels.surfsearch.OVERLAP_TOL``) reproduces them whenever
``step > 2``.

Patches are written as real tifxyz (:func:`vcd.formats.tifxyz.write_surface`, ``auto_grown_*`` names,
``meta.json`` with ``bbox``, ``area_cm2`` and the origin in ``vcd_synth_origin``) with their
``overlapping.json`` (the true links), in a volpkg (:func:`vcd.formats.volpkg.create_volpkg`) that has
no volume. Writes skip the fsync (throw-away data): about 2 ms per patch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats.tifxyz import area_cm2, surface_area_vx2, write_surface
from ..formats.volpkg import create_volpkg

#: meta.json key holding a synthetic patch's lower-corner sheet cell ``[u0, v0]``
ORIGIN_KEY = "vcd_synth_origin"
#: name prefix of the synthetic patches (VC3D's patch rule: ``auto_grown_*``)
PREFIX = "auto_grown_synth_"


@dataclass
class SynthCollection:
    """What was written: the volpkg, the patch names, their origins and the true overlap pairs.

    ``origins[i] = (u0, v0)`` sheet cells (even) of ``names[i]``; ``pairs`` int ``[K, 2]`` with
    ``i < j``: patches ``i`` and ``j`` overlap. Geometry: ``step`` voxels per cell, ``cells`` cells
    per patch side, wave amplitude ``amp`` and wavelength ``wavelength`` (voxels)."""

    volpkg: Path
    names: list = field(default_factory=list)
    origins: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    step: float = 10.0
    cells: int = 9
    length_cells: int = 0
    height_cells: int = 0
    amp: float = 100.0
    wavelength: float = 2000.0
    y0: float = 500.0
    z0: float = 50.0
    voxelsize_um: float = 7.91

    @property
    def paths(self) -> Path:
        return self.volpkg / "paths"

    def points(self, u0: int, v0: int) -> np.ndarray:
        """float32 ``[cells+1, cells+1, 3]`` ``(x, y, z)`` voxels of the window at sheet cell ``(u0, v0)``
        (rows along ``v``, columns along ``u``)."""
        return sheet_points(np.arange(u0, u0 + self.cells + 1), np.arange(v0, v0 + self.cells + 1), self.step,
                            self.amp, self.wavelength, self.y0, self.z0)

    def links(self) -> dict[str, set[str]]:
        """The true symmetric overlap graph ``{name: names}`` (every patch present)."""
        out = {n: set() for n in self.names}
        for i, j in self.pairs:
            out[self.names[i]].add(self.names[j])
            out[self.names[j]].add(self.names[i])
        return out

    def overlapping(self, u0: int, v0: int) -> list[str]:
        """Names of the written patches a window at ``(u0, v0)`` overlaps (the truth for a new patch)."""
        d = np.abs(self.origins - np.array([u0, v0]))
        hit = np.flatnonzero((d <= self.cells - 1).all(axis=1))
        return sorted(self.names[i] for i in hit)

    def free_origin(self, rng: np.random.Generator) -> tuple[int, int]:
        """An even sheet cell where no patch starts (for a patch dropped in later)."""
        taken = {(int(u), int(v)) for u, v in self.origins}
        while True:
            u = 2 * int(rng.integers(0, max(1, (self.length_cells - self.cells) // 2)))
            v = 2 * int(rng.integers(0, max(1, (self.height_cells - self.cells) // 2)))
            if (u, v) not in taken:
                return u, v

    def add_patch(self, name: str, u0: int, v0: int) -> list[str]:
        """Write a new, unlinked patch (as a grower leaves it) at ``(u0, v0)`` and add it to this
        collection's truth; returns the names it truly overlaps (what linking must find)."""
        want = self.overlapping(u0, v0)
        self.write_patch(name, u0, v0)
        k = len(self.names)
        idx = np.array(sorted(self.names.index(n) for n in want), np.int64)
        self.names.append(name)
        self.origins = np.concatenate([self.origins, [[u0, v0]]]).astype(np.int64)
        self.pairs = np.concatenate([self.pairs, np.stack([idx, np.full(len(idx), k)], 1)]).astype(np.int64)
        return want

    def write_patch(self, name: str, u0: int, v0: int, overlapping: list[str] | None = None,
                    sync: bool = False) -> Path:
        """Write one window as patch ``name`` in ``paths/`` (``overlapping``: its links; None writes no
        ``overlapping.json``, as a freshly grown, unlinked patch)."""
        pts = self.points(u0, v0)
        meta = {"source": "vcd_synth_collection", ORIGIN_KEY: [int(u0), int(v0)],
                "area_cm2": area_cm2(surface_area_vx2(pts), self.voxelsize_um)}
        return write_surface(self.paths / name, pts, meta, scale=[1.0 / self.step, 1.0 / self.step],
                             overlapping=overlapping, sync=sync)


def sheet_points(u: np.ndarray, v: np.ndarray, step: float, amp: float, wavelength: float, y0: float,
                 z0: float) -> np.ndarray:
    """The sheet at cells ``u`` (columns) × ``v`` (rows): float32 ``[len(v), len(u), 3]`` of ``(x, y, z)``."""
    x = np.asarray(u, np.float64) * step
    y = y0 + amp * np.sin(2 * np.pi * x / wavelength)
    z = z0 + np.asarray(v, np.float64) * step
    pts = np.empty((len(v), len(u), 3), np.float32)
    pts[..., 0] = x[None, :]
    pts[..., 1] = y[None, :]
    pts[..., 2] = z[:, None]
    return pts


def overlap_pairs(origins: np.ndarray, cells: int) -> np.ndarray:
    """``[K, 2]`` index pairs ``i < j`` whose windows (``cells`` cells, even origins) overlap:
    ``|Δu| ≤ cells − 1`` and ``|Δv| ≤ cells − 1``. O(N · cells²) through a site grid."""
    o = np.asarray(origins, np.int64) // 2
    if len(o) == 0:
        return np.zeros((0, 2), np.int64)
    reach = (cells - 1) // 2
    lo = o.min(0)
    o = o - lo + reach
    grid = -np.ones(tuple(o.max(0) + 2 * reach + 1), np.int64)
    grid[o[:, 0], o[:, 1]] = np.arange(len(o))  # one patch per site (origins are distinct)
    out = []
    for du in range(-reach, reach + 1):
        for dv in range(-reach, reach + 1):
            if (du, dv) <= (0, 0):  # each unordered pair once (i < j fixed below)
                continue
            j = grid[o[:, 0] + du, o[:, 1] + dv]
            i = np.flatnonzero(j >= 0)
            out.append(np.stack([i, j[i]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    return np.sort(pairs, axis=1)[np.lexsort((pairs.max(1), pairs.min(1)))]


def layout(n_patches: int, mean_links: float = 15.0, height_cells: int = 200, cells: int = 9,
           seed: int = 0) -> tuple[np.ndarray, int, int]:
    """Distinct even origins for ``n_patches`` windows on a sheet ``height_cells`` tall, as long as it
    takes for about ``mean_links`` overlaps per patch: ``(origins [N, 2], length_cells, height_cells)``."""
    if cells % 2 == 0 or cells < 3:
        raise ValueError(f"cells must be odd and >= 3 (got {cells}): even origins then overlap by >= 1 cell "
                         "or are >= 1 cell apart")
    rng = np.random.default_rng(seed)
    per = cells  # overlapping sites per axis around a site: (cells - 1) // 2 * 2 + 1
    occupancy = min(0.9, (mean_links + 1) / (per * per))
    sites_v = max(1, (height_cells - cells) // 2 + 1)
    sites_u = max(1, int(np.ceil(n_patches / occupancy / sites_v)))
    flat = rng.choice(sites_u * sites_v, size=n_patches, replace=False)
    origins = np.stack([2 * (flat // sites_v), 2 * (flat % sites_v)], axis=1).astype(np.int64)
    return origins, 2 * (sites_u - 1) + cells, 2 * (sites_v - 1) + cells


def generate_collection(volpkg: str | os.PathLike, n_patches: int, *, mean_links: float = 15.0,
                        height_cells: int = 200, cells: int = 9, step: float = 10.0, seed: int = 0,
                        progress=None) -> SynthCollection:
    """Write ``n_patches`` linked patches of one long sheet into a new volpkg (no volume).

    Parameters
    ----------
    volpkg : path
        The volpkg to create (``config.json``, ``volumes/``, ``paths/``).
    n_patches : int
    mean_links : float
        About how many overlaps a patch has (the sheet's length follows).
    height_cells, cells : int
        Sheet height and patch side in grid cells (``cells`` odd).
    step : float
        Voxels per grid cell (> 2, the linking tolerance); ``meta.scale = 1/step``.
    seed : int
        Draw of the layout.
    progress : callable ``(done, total)``, optional

    Returns
    -------
    SynthCollection
        Names, origins and the true overlap pairs; ``overlapping.json`` of each patch lists them.
    """
    if step <= 2.0:
        raise ValueError(f"step must exceed the 2-voxel linking tolerance (got {step})")
    vp = create_volpkg(volpkg)
    origins, length, height = layout(n_patches, mean_links, height_cells, cells, seed)
    coll = SynthCollection(vp.path, [f"{PREFIX}{i:06d}" for i in range(n_patches)], origins,
                           overlap_pairs(origins, cells), float(step), int(cells), length, height)
    links = coll.links()
    for i, name in enumerate(coll.names):
        coll.write_patch(name, int(origins[i, 0]), int(origins[i, 1]), sorted(links[name]))
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, n_patches)
    return coll


def load_collection(volpkg: str | os.PathLike) -> SynthCollection:
    """The :class:`SynthCollection` of a volpkg written by :func:`generate_collection` (origins read
    back from each patch's ``meta.json``; the geometry from the first one)."""
    from ..formats.volpkg import list_patches
    names, origins, step = [], [], 10.0
    for d, meta in list_patches(Path(volpkg) / "paths"):
        if ORIGIN_KEY in meta:
            names.append(d.name)
            origins.append(meta[ORIGIN_KEY])
            step = 1.0 / float(meta["scale"][0])
    o = np.array(origins, np.int64).reshape(-1, 2)
    first = Path(volpkg) / "paths" / names[0] if names else None
    cells = 9
    if first is not None:
        from ..formats.tifxyz import grid_shape
        cells = grid_shape(first)[0] - 1
    length = int(o[:, 0].max()) + cells if len(o) else 0
    height = int(o[:, 1].max()) + cells if len(o) else 0
    return SynthCollection(Path(volpkg), names, o, overlap_pairs(o, cells), step, cells, length, height)
