"""The patch collection as the tracer sees it: masked grids ready for point queries, tags, links.

``defective`` patches are left out entirely; masked pixels are invalid (``read_surface`` applies
``mask.tif``); ``approved`` patches are remembered; a patch that cannot be read is skipped with a
warning naming it. Debug snapshots and other non-patches never enter (``list_patches``).

Grid steps: with ``src_step`` given, every patch grid is made ``src_step`` voxels per pixel (the
tracer's unit): a patch whose ``meta.json`` ``scale`` says otherwise is resampled (bilinear; one
warning line for all of them), except the seed, whose mismatch means the params do not fit the
collection — that is refused with an :class:`InputError` naming the seed's meta.json and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from ..formats.overlaps import read_overlaps
from ..formats.tifxyz import read_surface
from ..formats.volpkg import list_patches
from ..grow.linking import SurfaceSearch
from ..kernels.multisurface import PackedSurfaces


def mask_fingerprint(surface_dir: Path, valid: np.ndarray) -> str | None:
    """sha1 of the keep-bitmap (mask applied) when ``mask.tif`` exists, else None."""
    if not (surface_dir / "mask.tif").exists():
        return None
    return hashlib.sha1(np.packbits(valid).tobytes() + f"{valid.shape[0]}x{valid.shape[1]}".encode()).hexdigest()


@dataclass
class PatchSet:
    names: list = field(default_factory=list)
    search: list = field(default_factory=list)
    approved: set = field(default_factory=set)
    links: list = field(default_factory=list)     #: links[i] = set of patch indices
    info: dict = field(default_factory=dict)      #: name -> {"mask_sha1", "tags"}
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))
    skipped: list = field(default_factory=list)
    _packed: PackedSurfaces | None = None

    @classmethod
    def load(cls, src_dir: str | Path, warn=print, extra: list[Path] = (), src_step: float | None = None,
             seed: str | None = None) -> "PatchSet":
        """Read the collection. ``src_step`` (voxels per patch pixel): resample patches of another
        grid step to it; the patch named ``seed`` must already have it (else :class:`InputError`)."""
        src_dir = Path(src_dir)
        resampled = []
        if not src_dir.is_dir():
            raise InputError(src_dir, "patch directory does not exist", "pass the volpkg's paths/ directory")
        ps = cls()
        entries = list_patches(src_dir) + [(p, None) for p in extra]
        seen = set()
        for d, _meta in entries:
            if d.name in seen:
                continue
            seen.add(d.name)
            try:
                s = read_surface(d)
            except FormatError as exc:
                warn(f"skipping patch {d.name}: {exc.message}")
                ps.skipped.append(d.name)
                continue
            tags = sorted(s.tags)
            if "defective" in tags:
                ps.info[d.name] = {"mask_sha1": mask_fingerprint(d, s.valid), "tags": tags, "excluded": True}
                continue
            if not s.valid.any():
                continue
            fingerprint = mask_fingerprint(d, s.valid)
            if src_step is not None and not _step_matches(s, src_step):
                if d.name == seed:
                    raise _seed_step_error(d, s, src_step)
                if not _resample_to(s, d, float(src_step), warn):
                    ps.skipped.append(d.name)
                    continue
                resampled.append(f"{d.name}: meta.json scale {list(s.scale)}")
                if not s.valid.any():
                    continue
            ps.names.append(d.name)
            ps.search.append(SurfaceSearch.from_points(s.points))
            ps.info[d.name] = {"mask_sha1": fingerprint, "tags": tags}
            if "approved" in tags:
                ps.approved.add(len(ps.names) - 1)
        if resampled:
            warn(f"{len(resampled)} patch(es) have a grid step other than src_step {float(src_step):g} voxels "
                 f"(e.g. {resampled[0]}); "
                 f"resampled to {float(src_step):g}-voxel grids")
        index = {n: i for i, n in enumerate(ps.names)}
        ps.links = [set() for _ in ps.names]
        for i, n in enumerate(ps.names):
            for m in read_overlaps(src_dir / n):
                j = index.get(m)
                if j is not None and j != i:
                    ps.links[i].add(j)
                    ps.links[j].add(i)
        ps.boxes = np.array([[s.grid[s.valid].min(0), s.grid[s.valid].max(0)] for s in ps.search]).reshape(-1, 2, 3)
        return ps

    @property
    def packed(self) -> PackedSurfaces:
        """All patches packed for batched point queries (built on first use)."""
        if self._packed is None:
            self._packed = PackedSurfaces([s.grid for s in self.search], [s.valid for s in self.search])
        return self._packed

    def index(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None

    def near(self, p: np.ndarray, margin: float) -> np.ndarray:
        """Indices of patches whose bbox is within ``margin`` voxels of point ``p``."""
        if len(self.boxes) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.nonzero(np.all(self.boxes[:, 0] - margin <= p, axis=1) & np.all(self.boxes[:, 1] + margin >= p, axis=1))[0]


def _grid_step(s) -> tuple[float, float]:
    """``(column step, row step)`` of surface ``s`` in voxels (``1 / meta.scale``)."""
    sx, sy = s.scale
    return 1.0 / sx, 1.0 / sy


def _step_matches(s, src_step: float, rtol: float = 1e-3) -> bool:
    return all(abs(g - float(src_step)) <= rtol * float(src_step) for g in _grid_step(s))


MAX_RESAMPLED_POINTS = 1 << 24  #: a resampled patch grid larger than this (points) is skipped


def _resample_to(s, d: Path, src_step: float, warn) -> bool:
    """Resample surface ``s`` (patch dir ``d``) in place to ``src_step``-voxel pixels; False (after
    one warning line) when the result would be unreasonably large."""
    col, row = _grid_step(s)
    n = ((s.shape[0] - 1) * row / src_step + 1) * ((s.shape[1] - 1) * col / src_step + 1)
    if n > MAX_RESAMPLED_POINTS:
        warn(f"skipping patch {d.name}: its grid step ({col:g} voxels, meta.json scale {list(s.scale)}) "
             f"resampled to src_step {src_step:g} would need {n:.3g} points; check its scale or src_step")
        return False
    s.points = resample_grid(s.points, (col, row), src_step)
    return True


def _seed_step_error(d: Path, s, src_step: float) -> InputError:
    col, row = _grid_step(s)
    step = f"{col:g}" if abs(col - row) <= 1e-3 * col else f"{col:g} × {row:g}"
    return InputError(d / "meta.json",
                      f"the seed patch's grid step is {step} voxels (scale {list(s.scale)}) but the trace "
                      f"params say src_step {float(src_step):g}",
                      f"set \"src_step\": {col:g} in the params JSON (src_step must be the patches' step_size), "
                      f"or choose a seed grown at step {float(src_step):g}")


def resample_grid(points: np.ndarray, from_step: tuple[float, float], to_step: float) -> np.ndarray:
    """Bilinear resampling of a surface grid to ``to_step`` voxels per pixel.

    ``points``: float32 ``[rows, cols, 3]`` of ``(x, y, z)`` voxels, ``-1`` invalid; ``from_step``:
    its ``(column, row)`` step in voxels. A new point is valid iff every source corner with a
    non-zero weight is valid. Returns float32 ``[rows', cols', 3]`` spanning the same extent."""
    P = points.astype(np.float64)
    valid = (P[..., 0] != -1) & (P[..., 2] > 0)
    P[~valid] = 0.0
    (r0, r1, fr), (c0, c1, fc) = (_axis_weights(points.shape[ax], from_step[1 - ax], to_step) for ax in (0, 1))
    out = np.zeros((len(r0), len(c0), 3))
    ok = np.ones((len(r0), len(c0)), bool)
    for rr, wr in ((r0, 1 - fr), (r1, fr)):
        for cc, wc in ((c0, 1 - fc), (c1, fc)):
            w = wr[:, None] * wc[None, :]
            out += w[..., None] * P[np.ix_(rr, cc)]
            ok &= (w <= 1e-9) | valid[np.ix_(rr, cc)]
    out[~ok] = -1
    return out.astype(np.float32)


def _axis_weights(n: int, step: float, to_step: float):
    """Source indices (i0, i1) and weights of i1 for the new samples along an axis of ``n`` points."""
    pos = np.arange(0.0, (n - 1) * step / to_step + 1e-6) * (to_step / step)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    return i0, np.minimum(i0 + 1, n - 1), np.clip(pos - i0, 0.0, 1.0)
