"""Overlap linking (``vc_seg_add_overlap``): which patches of a collection overlap a given one.

Two surfaces *overlap* when a point of one lies within ``tol`` (2.0) voxels of the other
(VC3D's threshold). Unlike VC3D's 10 random samples, the test here is deterministic and
symmetric: every valid vertex and quad centre of A is tested against B's triangles (exact
point-to-triangle distance over every quad with a vertex within ``tol`` + that vertex's longest
edge, found in a sparse cell hash of B's vertices; the few quads of an outlier point, with edges
far longer than the rest, are tested one by one), then B against A, stopping at the first
``min_hits`` hits. Any grid the formats layer accepts is handled: repeated or collinear points
(degenerate triangles count as their edges), flat or huge bboxes, ``inf`` points (invalid here);
a neighbour that cannot be read or tested is skipped with one warning line.

Linking one patch against 10k patches stays well under 50 ms because a long-running process
keeps one :class:`PatchIndex` per ``paths/`` (:func:`shared_index`): a bbox array refreshed with
one ``listdir`` (only new patches' ``meta.json`` are read), an LRU of prepared surfaces (keyed
by the tif/mask stat, so neighbours are not re-read), one numba call per pair test, and the
neighbours' ``overlapping.json`` written by a thread pool while the search goes on.

Masks are honoured (surfaces are read with :func:`vcd.formats.tifxyz.read_surface`); debug
snapshots and non-patches never take part (:func:`vcd.formats.volpkg.list_patches`).
"""

from __future__ import annotations

import bisect
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats.jsonio import read_json
from ..formats.overlaps import Linker
from ..formats.tifxyz import read_surface
from ..formats.volpkg import is_patch, name_is_utf8
from ..kernels.surfsearch import OVERLAP_TOL, SurfaceSearch, surfaces_overlap  # noqa: F401 (re-exported)


@dataclass
class PatchIndex:
    """Bboxes of every patch in a directory, refreshed incrementally.

    A refresh costs one ``stat`` of the directory when nothing was added or removed, else one
    ``listdir`` plus a read of each *new* patch's ``meta.json``. A directory replaced under the same
    name keeps its old bbox (patches are never rewritten in place; tag and mask edits leave the bbox
    a superset); the point-search cache checks each patch's tif/mask times when it is used."""

    root: Path
    names: list = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))
    _boxes: dict = field(default_factory=dict)     #: name -> bbox (2×3) of every indexed patch
    _search: OrderedDict = field(default_factory=OrderedDict)  #: LRU name -> (mtime key, SurfaceSearch, bytes)
    _search_bytes: int = 0
    cache_bytes: int = 512 << 20                   #: bound on the memory of cached search structures
    _rejected: dict = field(default_factory=dict)  #: name -> meta.json mtime of entries that are not patches
    _dir_mtime: int | None = None
    _keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  #: [lo, -hi] rows for candidates()

    def search(self, name: str, warn=None) -> "SurfaceSearch | None":
        """The (cached) point-search structure of patch ``name``; re-read when its files change."""
        d = os.path.join(self.root, name)
        key = []
        for f in ("x.tif", "mask.tif"):
            try:
                st = os.stat(os.path.join(d, f))
                key += (st.st_mtime_ns, st.st_ino, st.st_size)
            except FileNotFoundError:
                key.append(0)
            except OSError:
                return None
        key = tuple(key)
        hit = self._search.get(name)
        if hit is not None and hit[0] == key:
            self._search.move_to_end(name)
            return hit[1]
        try:
            s = SurfaceSearch.from_points(read_surface(Path(d)).points).prepare()
        except FormatError as exc:
            if warn:
                warn(f"skipping {name}: {exc.message}")
            return None
        except (OSError, ValueError, MemoryError) as exc:  # unreadable for another reason: still one line
            if warn:
                warn(f"skipping {name}: cannot be read ({type(exc).__name__}: {exc})")
            return None
        nbytes = 4 * s.grid.nbytes + 1024  # grid, samples, vertex hash and reach
        old = self._search.pop(name, None)
        self._search_bytes += nbytes - (old[2] if old else 0)
        self._search[name] = (key, s, nbytes)
        while self._search_bytes > self.cache_bytes and len(self._search) > 1:
            _, (_, _, b) = self._search.popitem(last=False)
            self._search_bytes -= b
        return s

    def _read_box(self, name: str):
        path = os.path.join(self.root, name)
        try:
            meta = read_json(Path(path) / "meta.json")
        except FormatError:
            return None
        if not isinstance(meta, dict) or not is_patch(Path(path), meta):
            return None
        try:
            bb = np.asarray(meta["bbox"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            return None
        return bb if bb.shape == (2, 3) else None

    def refresh(self) -> "PatchIndex":
        """Pick up new and removed patches (known patches are not re-read)."""
        try:
            dir_mtime = os.stat(self.root).st_mtime_ns
        except FileNotFoundError:
            dir_mtime = None
        if dir_mtime is not None and dir_mtime == self._dir_mtime:
            return self
        try:
            listing = set(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            listing = set()
        # trust the directory time only once it is settled: it has a coarse (jiffy) resolution, so a
        # change in the same tick as this listing would not move it
        settled = dir_mtime is not None and time.time_ns() - dir_mtime > 50_000_000
        self._dir_mtime = dir_mtime if settled else None
        # entries that were not patches last time (e.g. meta.json not yet there) are looked at again
        fresh = listing - self._boxes.keys()
        removed = self._boxes.keys() - listing if len(listing) - len(fresh) != len(self._boxes) else ()
        added = {}
        for name in fresh:
            if not name.startswith("auto_grown_") or not name_is_utf8(name):
                continue
            try:  # also rejects non-directories and symlink loops
                mt = os.stat(os.path.join(self.root, name, "meta.json")).st_mtime_ns
            except OSError:
                continue
            if self._rejected.get(name) == mt:  # not a patch, and meta.json unchanged since
                continue
            bb = self._read_box(name)
            if bb is None:
                self._rejected[name] = mt
            else:
                added[name] = bb
                self._rejected.pop(name, None)
        if len(self._rejected) and self._rejected.keys() - listing:
            self._rejected = {n: m for n, m in self._rejected.items() if n in listing}
        if not removed and not added:
            return self
        for name in removed:
            del self._boxes[name]
            old = self._search.pop(name, None)
            if old is not None:
                self._search_bytes -= old[2]
        self._boxes.update(added)
        if removed or len(added) > 64:
            self.names = sorted(self._boxes)
            self.boxes = np.array([self._boxes[n] for n in self.names], dtype=np.float64).reshape(-1, 2, 3)
            self._keys = np.ascontiguousarray(np.concatenate([self.boxes[:, 0], -self.boxes[:, 1]], axis=1))
        else:  # a few new patches: insert them in place (names stay sorted)
            for name in sorted(added):
                i = bisect.bisect_left(self.names, name)
                self.names.insert(i, name)
                bb = added[name]
                self.boxes = np.insert(self.boxes, i, bb, axis=0)
                self._keys = np.insert(self._keys, i, np.concatenate([bb[0], -bb[1]]), axis=0)
        return self

    def candidates(self, bbox, margin: float = OVERLAP_TOL) -> list[str]:
        """Names of patches whose bbox intersects ``bbox`` grown by ``margin`` voxels."""
        if len(self.names) == 0:
            return []
        bb = np.asarray(bbox, dtype=np.float64)
        q = np.concatenate([bb[1] + margin, -(bb[0] - margin)])
        hit = np.flatnonzero((self._keys <= q).all(axis=1))
        names = self.names
        return [names[i] for i in hit]


_SHARED: dict = {}


def shared_index(paths_dir: str | os.PathLike) -> PatchIndex:
    """This process's :class:`PatchIndex` of ``paths_dir`` (refreshed): a long-running worker keeps
    bboxes and point-search structures between jobs instead of re-reading every patch."""
    key = os.path.realpath(paths_dir)
    idx = _SHARED.get(key)
    if idx is None:
        idx = _SHARED[key] = PatchIndex(Path(key))
    return idx.refresh()


def _own_search(paths_dir: Path, patch_name: str, index: PatchIndex) -> SurfaceSearch:
    mine = index.search(patch_name) if patch_name in index._boxes else None
    if mine is None:
        mine = SurfaceSearch.from_points(read_surface(paths_dir / patch_name).points)  # raises if malformed
    return mine


def _iter_overlaps(mine: SurfaceSearch, patch_name: str, index: PatchIndex, warn=None):
    """Yield the names of the patches that overlap ``mine`` (patch ``patch_name``), in index order."""
    if len(mine.rc) == 0:
        return
    pts = mine.grid[mine.valid]
    for other in index.candidates([pts.min(0), pts.max(0)]):
        if other == patch_name:
            continue
        s = index.search(other, warn)
        if s is not None and _overlap_or_warn(mine, s, other, warn):
            yield other


def _overlap_or_warn(mine: SurfaceSearch, other: SurfaceSearch, name: str, warn) -> bool:
    """:func:`surfaces_overlap`, but a failure of the test skips this one pair with a warning line
    (the kernels handle degenerate grids; this keeps a future bug from failing every overlap job)."""
    try:
        return surfaces_overlap(mine, other)
    except (ArithmeticError, ValueError, IndexError) as exc:
        if warn:
            warn(f"skipping {name}: overlap test failed ({type(exc).__name__}: {exc})")
        return False


def link_new_patch(paths_dir: str | os.PathLike, patch_name: str | os.PathLike, search_effort: int = 10,
                   index: PatchIndex | None = None, also: list[str] = (), warn=None) -> list[str]:
    """Find the overlaps of a patch and write symmetric ``overlapping.json`` links (the ``overlap`` job's
    body, ``vc_seg_add_overlap``).

    Each neighbour's file is written (in the background) as soon as the overlap is found, while the
    search goes on; the patch's own list is written last.

    Parameters
    ----------
    paths_dir : str or os.PathLike
        The ``paths/`` directory holding the patches.
    patch_name : str or os.PathLike
        The new patch's name, or its path (as ``vc_seg_add_overlap`` takes it).
    search_effort : int
        Accepted for VC3D compatibility; the search here is exhaustive.
    index : PatchIndex, optional
        Bboxes and point-search structures of ``paths_dir`` (default: this process's
        :func:`shared_index`).
    also : list of str
        Patches to link regardless (the expansion source, as VC3D does).
    warn : callable, optional
        ``warn(message)`` for a neighbour skipped (unreadable, or its overlap test failed).

    Returns
    -------
    list of str
        The linked neighbour names.
    """
    paths_dir = Path(paths_dir)
    patch_name = Path(patch_name).name
    index = index if index is not None else shared_index(paths_dir)
    mine = _own_search(paths_dir, patch_name, index)  # a malformed patch raises before anything is written
    found = set(also)
    with Linker(paths_dir, patch_name) as linker:
        for other in also:
            linker.add(other)
        for other in _iter_overlaps(mine, patch_name, index, warn):
            found.add(other)
            linker.add(other)
    return sorted(found)
