"""The patch collection as the tracer sees it: masked grids ready for point queries, tags, links.

``defective`` patches are left out entirely; masked pixels are invalid (``read_surface`` applies
``mask.tif``); ``approved`` patches are remembered, and so are per-vertex approvals (VC3D's
``approval.tif``, nonzero = approved): the tracer trusts an approved vertex as it trusts a whole
``approved`` patch (an unreadable ``approval.tif`` is named in a warning and ignored); a patch that cannot be read is skipped with a
warning naming it. Debug snapshots and other non-patches never enter (``list_patches``).

Grid steps (``meta.json`` ``scale`` = patch pixels per voxel): with ``src_step`` given, a seed whose
step is not ``src_step`` means the params do not fit the collection — refused with an
:class:`InputError` naming the seed's meta.json and the fix. Other patches of another step are kept
as they are (the tracer walks each patch in its own grid units, measured from its spacing), with
one warning line for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from ..formats.overlaps import link_sets
from ..formats.tifxyz import bitmap_sha1, mask_fingerprint, read_approval, read_surface
from ..formats.volpkg import list_patches
from ..kernels.surfsearch import SurfaceSearch
from ..kernels.multisurface import PackedSurfaces


@dataclass
class PatchSet:
    names: list = field(default_factory=list)
    search: list = field(default_factory=list)
    approved: set = field(default_factory=set)    #: indices of whole-patch ``approved`` patches
    approved_vertices: dict = field(default_factory=dict)  #: index -> bool [rows, cols] (approval.tif)
    links: list = field(default_factory=list)     #: links[i] = set of patch indices
    info: dict = field(default_factory=dict)      #: name -> {"mask_sha1", "tags"[, "approval_sha1"]}
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))
    skipped: list = field(default_factory=list)
    _packed: PackedSurfaces | None = None

    @classmethod
    def load(cls, src_dir: str | Path, warn=print, extra: list[Path] = (), src_step: float | None = None,
             seed: str | None = None) -> "PatchSet":
        """Read the collection. ``src_step`` (voxels per patch pixel, the trace params'): the patch
        named ``seed`` must have that grid step (else :class:`InputError`); others are only counted."""
        src_dir = Path(src_dir)
        other_step = []
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
                ps.info[d.name] = {"mask_sha1": mask_fingerprint(d, *s.shape), "tags": tags, "excluded": True}
                continue
            if not s.valid.any():
                continue
            if src_step is not None and not _step_matches(s, src_step):
                if d.name == seed:
                    raise _seed_step_error(d, s, src_step)
                other_step.append(f"{d.name}: meta.json scale {list(s.scale)}")
            ps.names.append(d.name)
            ps.search.append(SurfaceSearch.from_points(s.points))
            ps.info[d.name] = {"mask_sha1": mask_fingerprint(d, *s.shape), "tags": tags}
            if "approved" in tags:
                ps.approved.add(len(ps.names) - 1)
            ps._load_approval(d, s.valid.shape, warn)
        if other_step:
            warn(f"{len(other_step)} patch(es) have a grid step other than src_step {float(src_step):g} voxels "
                 f"(e.g. {other_step[0]}); each is followed in its own grid units")
        index = {n: i for i, n in enumerate(ps.names)}
        ps.links = [set() for _ in ps.names]
        links = link_sets(src_dir)
        for i, n in enumerate(ps.names):
            for m in links.get(n, ()):
                j = index.get(m)
                if j is not None and j != i:
                    ps.links[i].add(j)
                    ps.links[j].add(i)
        ps.boxes = np.array([[s.grid[s.valid].min(0), s.grid[s.valid].max(0)] for s in ps.search]).reshape(-1, 2, 3)
        return ps

    def _load_approval(self, d: Path, shape, warn) -> None:
        """Per-vertex approvals of the patch just appended (``approval.tif``), if any."""
        try:
            appr = read_approval(d, *shape)
        except FormatError as exc:
            warn(f"ignoring approvals of patch {d.name}: {exc.message}")
            return
        if appr is None:
            return
        self.info[d.name]["approval_sha1"] = bitmap_sha1(appr)  # the approval.tif's fingerprint, as provenance
        if appr.any():
            self.approved_vertices[len(self.names) - 1] = appr

    @property
    def any_approved(self) -> bool:
        """Whether any patch is approved, whole or per vertex."""
        return bool(self.approved or self.approved_vertices)

    def trusted(self, t: int, loc) -> bool:
        """Patch ``t`` is trusted at ``loc`` = (row, col) in its grid: the whole patch is
        ``approved``, or the vertex nearest ``loc`` is approved in its ``approval.tif``."""
        if t in self.approved:
            return True
        appr = self.approved_vertices.get(t)
        if appr is None:
            return False
        r = min(max(int(round(float(loc[0]))), 0), appr.shape[0] - 1)
        c = min(max(int(round(float(loc[1]))), 0), appr.shape[1] - 1)
        return bool(appr[r, c])

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


def _seed_step_error(d: Path, s, src_step: float) -> InputError:
    col, row = _grid_step(s)
    step = f"{col:g}" if abs(col - row) <= 1e-3 * col else f"{col:g} × {row:g}"
    return InputError(d / "meta.json",
                      f"the seed patch's grid step is {step} voxels (scale {list(s.scale)}) but the trace "
                      f"params say src_step {float(src_step):g}",
                      f"set \"src_step\": {col:g} in the params JSON (src_step must be the patches' step_size), "
                      f"or choose a seed grown at step {float(src_step):g}")
