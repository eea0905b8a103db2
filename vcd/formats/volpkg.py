"""A volpkg directory: ``config.json``, ``volumes/``, ``paths/`` (and optional ``traces/``).

Also the one place that decides what counts as a *patch* (:func:`is_patch`): what VC3D's grower
and tracer load — a directory named ``auto_grown_*`` whose ``meta.json`` has ``"format": "tifxyz"``
and a ``bbox``, whatever tool made it (any ``source``, or none). Traces (``auto_trace_*`` or a
tracer ``source``) and tracer debug snapshots (``z_dbg_gen_*``, or VC's ``auto_grown_*`` snapshots
that carry ``vc_grow_seg_from_segments_params`` and no ``source``, unless a person promoted one to
a superpatch with tags / overlaps) are never patches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FormatError
from .jsonio import atomic_write_json, read_json

if TYPE_CHECKING:  # opening a volume imports zarr: only VolPkg.volume() needs it
    from .volume import Volume

TRACE_SOURCES = {"vc_grow_seg_from_segments", "vcd_trace"}
#: the name both tracers (VC3D's and ours) give a trace directory
TRACE_PREFIX = "auto_trace_"

#: the directory inside a volpkg where vcd keeps what VC3D ignores (queue, lock, caches, previews)
STATE_DIR = ".vcd"


def is_volpkg(path: str | os.PathLike) -> bool:
    """The quick test for "is this directory a volpkg": it holds a ``config.json`` (open it with
    :func:`open_volpkg` to check the config itself)."""
    return (Path(path) / "config.json").is_file()


def state_dir(volpkg: str | os.PathLike) -> Path:
    """``<volpkg>/.vcd``: daemon state, queue, lock, caches and previews (VC3D ignores it)."""
    return Path(volpkg) / STATE_DIR


def is_prediction_name(name: str) -> bool:
    """VC's naming convention for volumes: a directory named ``*pred*`` or ``*surface*`` holds a
    surface prediction (what the grower reads); any other volume is CT (what renders sample)."""
    return "pred" in name or "surface" in name


#: level-0 boxes (edge, voxels) read per volume to tell a prediction from a CT by content
_PROBE_EDGE = 48


def prediction_likeness(vol: "Volume") -> float:
    """How much a volume looks like a surface prediction, from its content: the share of voxels
    holding the volume's most common value, over five level-0 boxes of :data:`_PROBE_EDGE` voxels (the
    centre and four around it). A prediction is mostly one empty value with sharp bands (> 0.5); a CT
    is dense and noisy, its most common value holding a few percent."""
    import numpy as np
    Z, Y, X = vol.shape
    e = _PROBE_EDGE
    shares = []
    for fz, fy, fx in ((0.5, 0.5, 0.5), (0.3, 0.3, 0.3), (0.7, 0.7, 0.3), (0.3, 0.7, 0.7), (0.7, 0.3, 0.7)):
        z0, y0, x0 = (max(0, int(f * n) - e // 2) for f, n in ((fz, Z), (fy, Y), (fx, X)))
        box = vol.read_region_u8(z0, min(Z, z0 + e), y0, min(Y, y0 + e), x0, min(X, x0 + e))
        if box.size:
            shares.append(np.bincount(box.ravel(), minlength=256).max() / box.size)
    return float(np.mean(shares)) if shares else 0.0


def _likeness_or_zero(path: Path) -> float:
    """:func:`prediction_likeness` of the volume at ``path``; 0 for one that does not open or read."""
    from .volume import open_volume
    try:
        return prediction_likeness(open_volume(path))
    except (FormatError, OSError, ValueError):
        return 0.0


@dataclass
class VolPkg:
    """An opened volpkg. ``state_dir`` (``.vcd/``) holds daemon state VC3D ignores."""

    path: Path
    config: dict

    @property
    def volumes_dir(self) -> Path:
        return self.path / "volumes"

    @property
    def paths_dir(self) -> Path:
        return self.path / "paths"

    @property
    def state_dir(self) -> Path:
        return state_dir(self.path)

    def volume_names(self) -> list[str]:
        if not self.volumes_dir.is_dir():
            return []
        return sorted(p.name for p in self.volumes_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def zarr_names(self) -> list[str]:
        """Volume directories that hold zarr metadata (stray folders are never chosen by default)."""
        return [n for n in self.volume_names()
                if any((self.volumes_dir / n / f).exists() for f in (".zattrs", ".zgroup", "zarr.json", "0"))]

    def prediction_name(self) -> tuple[str, str]:
        """``(name, how)``: the surface-prediction volume and how it was told apart — ``"name"``
        (exactly one is named ``*pred*``/``*surface*``, :func:`is_prediction_name`), ``"content"``
        (names do not decide: the most sparse volume by :func:`prediction_likeness`) or ``"only"``."""
        names = self.zarr_names() or self.volume_names()
        if not names:
            raise FormatError(self.volumes_dir, "volpkg has no volumes", "put an OME-Zarr volume in volumes/")
        preds = [n for n in names if is_prediction_name(n)]
        if len(names) == 1:
            return names[0], "only"
        if len(preds) == 1:
            return preds[0], "name"
        pool = preds or names
        scores = {n: _likeness_or_zero(self.volumes_dir / n) for n in pool}
        return max(pool, key=lambda n: (scores[n], -pool.index(n))), "content"

    def ct_name(self) -> str | None:
        """The CT volume (what renders sample): the first volume that is not the prediction, or None."""
        names = self.zarr_names() or self.volume_names()
        if len(names) < 2:
            return None
        pred, _ = self.prediction_name()
        return next(n for n in names if n != pred)

    def volume(self, name: str | None = None) -> "Volume":
        """Open a volume by directory name; default: the prediction (:meth:`prediction_name`)."""
        from .volume import open_volume
        names = self.volume_names()
        if not names:
            raise FormatError(self.volumes_dir, "volpkg has no volumes", "put an OME-Zarr volume in volumes/")
        if name is None:
            name, _ = self.prediction_name()
        if name not in names:
            raise FormatError(self.volumes_dir / name, "no such volume", f"choose one of {names}")
        return open_volume(self.volumes_dir / name)


def open_volpkg(path: str | os.PathLike) -> VolPkg:
    """Open a volpkg; ``config.json`` must have ``name`` and ``version`` ≥ 6 (VC3D's rule).

    Parameters
    ----------
    path : str or os.PathLike
        The volpkg directory.

    Returns
    -------
    VolPkg
        Its ``config``, ``volumes/`` (``volume(name)`` opens one; ``ct_name`` is the CT) and ``paths/``.

    Raises
    ------
    FormatError
        No readable ``config.json``, or one without ``name`` / ``version`` ≥ 6.
    """
    path = Path(path)
    if not path.is_dir():
        raise FormatError(path, "volpkg directory does not exist", "check the path")
    cfg = read_json(path / "config.json", "volpkg config.json")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise FormatError(path / "config.json", "config.json needs a string \"name\"", "add \"name\": \"myscroll\"")
    if not isinstance(cfg.get("version"), int) or cfg["version"] < 6:
        raise FormatError(path / "config.json", "config.json needs integer \"version\" >= 6", "set \"version\": 7")
    return VolPkg(path, cfg)


def create_volpkg(path: str | os.PathLike, name: str | None = None) -> VolPkg:
    """Create an empty volpkg with ``config.json``, ``volumes/``, ``paths/`` (+ ``.vckeep`` files).

    Parameters
    ----------
    path : str or os.PathLike
        The directory to create.
    name : str, optional
        ``config.json``'s ``name`` (default: the directory's stem).

    Returns
    -------
    VolPkg
        The new volpkg, opened.
    """
    path = Path(path)
    for sub in ("volumes", "paths"):
        (path / sub).mkdir(parents=True, exist_ok=True)
        (path / sub / ".vckeep").touch()
    if not (path / "config.json").exists():
        atomic_write_json(path / "config.json", {"materialthickness": 20.0, "name": name or path.stem, "version": 7})
    return open_volpkg(path)


def name_is_utf8(name: str) -> bool:
    """False for directory names that are not valid UTF-8 (they cannot go into overlapping.json)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def is_debug_snapshot(name: str, meta: dict) -> bool:
    """Tracer debug snapshot (ours: ``z_dbg_gen_*``; VC's: grower name without ``source``)."""
    if name.startswith("z_dbg_gen_"):
        return True
    return "vc_grow_seg_from_segments_params" in meta and "source" not in meta


def is_trace(name: str, meta: dict) -> bool:
    """A consensus trace (``auto_trace_*``, or written by a tracer): never a patch."""
    return name.startswith(TRACE_PREFIX) or meta.get("source") in TRACE_SOURCES


#: the files every tifxyz surface has (its grid); a directory without them is not a surface yet
SURFACE_FILES = ("meta.json", "x.tif", "y.tif", "z.tif")


def is_trace_dir(surface_dir: str | os.PathLike, meta: dict) -> bool:
    """True if ``surface_dir`` (with its parsed ``meta``) is a trace for every reader of traces —
    the autoseg gate, the collection stats, ``vcd info``, the previews.

    A trace by :func:`is_trace` (name ``auto_trace_*`` or a tracer ``source``), not a tracer debug
    snapshot, with all of :data:`SURFACE_FILES`, not behind a symlink that resolves outside its
    directory. A trace stopped early (``vcd_incomplete`` in its meta) is still a trace; callers that
    want only finished ones check that key."""
    d = Path(surface_dir)
    return (isinstance(meta, dict) and is_trace(d.name, meta) and not is_debug_snapshot(d.name, meta)
            and all((d / f).exists() for f in SURFACE_FILES) and not resolves_outside(d))


def list_traces(volpkg: str | os.PathLike, roots: tuple[str, ...] = ("paths", "traces")) -> list[tuple[Path, dict]]:
    """``(dir, meta)`` of every trace (:func:`is_trace_dir`) in the volpkg's ``roots``.

    Parameters
    ----------
    volpkg : path
        The volpkg directory.
    roots : tuple of str
        Its subdirectories to look in, in this order: ``paths/`` (where VC3D's tracer writes by
        default) and ``traces/`` (vcd's ``tgt_dir``). In ``paths/``, which may hold 10,000 patches,
        only ``auto_trace_*`` entries are read (the name both tracers give their output); in any
        other root every entry's meta is.

    Returns
    -------
    list of (Path, dict)
        Per root, sorted by name (timestamped names: oldest first); unreadable metas are skipped.
    """
    out = []
    for which in roots:
        root = Path(volpkg) / which
        if not root.is_dir():
            continue
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir() or not name_is_utf8(entry.name):
                continue
            if which == "paths" and not entry.name.startswith(TRACE_PREFIX):
                continue
            d = Path(entry.path)
            try:
                meta = read_json(d / "meta.json", "surface meta.json")
            except FormatError:
                continue
            if is_trace_dir(d, meta):
                out.append((d, meta))
    return out


def resolves_outside(surface_dir: str | os.PathLike) -> bool:
    """True when ``surface_dir`` (an entry of ``paths/`` or ``traces/``) is a symlink, or sits behind
    one, that resolves outside the directory listing it — e.g. a patch shared from another disk or
    volpkg by symlink. vcd never reads or writes such a surface (issue 31: linking wrote into the
    folder it pointed to); copy the patch into the volpkg instead."""
    d = Path(surface_dir)
    parent = os.path.realpath(d.parent)
    return not os.path.realpath(d).startswith(parent.rstrip(os.sep) + os.sep)


def is_patch(surface_dir: Path, meta: dict) -> bool:
    """True if the tracer, expansion, linking, ``patches-at`` and previews treat this surface as a patch.

    VC3D's rule: name ``auto_grown_*``, ``"format": "tifxyz"`` and a ``bbox`` — any ``source``
    (ours, VC's, another tool's, or none). Traces and debug snapshots stay out; a VC tracer
    snapshot that a person linked or tagged (the tutorial's checkpointed superpatch) is a patch.
    A directory that resolves outside the directory listing it (:func:`resolves_outside`) never is.
    """
    name = Path(surface_dir).name
    if not name.startswith("auto_grown_") or not isinstance(meta, dict) or is_trace(name, meta):
        return False
    if meta.get("format") != "tifxyz" or "bbox" not in meta:
        return False
    if resolves_outside(surface_dir):
        return False
    if is_debug_snapshot(name, meta):  # a promoted superpatch: a person linked and/or tagged it
        return (Path(surface_dir) / "overlapping.json").exists() or bool(meta.get("tags"))
    return True


def list_patches(paths_dir: str | os.PathLike) -> list[tuple[Path, dict]]:
    """Every readable patch of a ``paths/`` directory (:func:`is_patch`), sorted by name.

    Entries that resolve outside ``paths_dir`` through a symlink, and unreadable metas, are skipped.

    Parameters
    ----------
    paths_dir : str or os.PathLike
        The ``paths/`` directory (missing: no patches).

    Returns
    -------
    list of tuple
        ``(dir, meta)``: the patch directory (:class:`~pathlib.Path`) and its parsed ``meta.json``.
    """
    return list(iter_patches(paths_dir))


def iter_patches(paths_dir: str | os.PathLike):
    """:func:`list_patches` one at a time, by name: each ``meta.json`` is read only when the caller
    gets that far (:func:`patch_step` needs the first patch, not all of them)."""
    root = Path(paths_dir)
    if not root.is_dir():
        return
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir() or not name_is_utf8(entry.name):
            continue
        p = Path(entry.path)
        if resolves_outside(p):  # never read (is_patch would refuse it anyway)
            continue
        try:
            meta = read_json(p / "meta.json", "surface meta.json")
        except FormatError:
            continue
        if isinstance(meta, dict) and is_patch(p, meta):
            yield p, meta


def finished_traces(volpkg: str | os.PathLike) -> list[Path]:
    """The finished traces in ``<volpkg>/traces/`` (:func:`list_traces`, not marked ``vcd_incomplete``),
    oldest first: what autoseg gates and builds its final sheets from."""
    return [d for d, meta in list_traces(volpkg, roots=("traces",)) if not meta.get("vcd_incomplete")]


def patch_step(paths: str | os.PathLike) -> float | None:
    """Voxels per grid cell of the collection's patches (their ``step_size``): ``1 / scale[0]`` of the
    first patch in ``paths`` whose ``meta.json`` has a scale; None without one."""
    for _, meta in iter_patches(paths):
        s = meta.get("scale")
        if isinstance(s, list) and s and s[0]:
            return float(round(1.0 / float(s[0]), 3))
    return None
