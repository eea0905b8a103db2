"""tifxyz surfaces: ``x.tif``, ``y.tif``, ``z.tif`` + ``meta.json`` (+ ``mask.tif``, ``approval.tif``, channels).

The single reader/writer of surfaces in vcd. A surface grid is ``points[row, col] = (x, y, z)``
in level-0 voxels (float32); invalid points are ``(-1, -1, -1)`` and a point with ``z <= 0`` is
invalid (VC3D's loader rule). ``meta.scale = [sx, sy]`` are grid points per voxel along columns
and rows, so neighbouring grid points are ``1/sx`` voxels apart along a row.

Writes are atomic: a new surface is staged in a temporary directory and renamed into place;
``meta.json`` / ``mask.tif`` updates go through a temp file and ``os.replace`` under a lock.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile

from ..errors import FormatError
from ..kernels.points import INVALID, valid_mask, valid_quads
from .jsonio import atomic_write_bytes, atomic_write_json, read_json, umask_mode, vc_dumps
from .locks import dir_lock
from .volpkg import is_volpkg, state_dir

TAGS_USED_BY_TRACER = ("approved", "defective")


@dataclass
class Surface:
    """A quad-grid surface. ``points`` is float32 ``[rows, cols, 3]`` holding ``(x, y, z)`` voxels."""

    points: np.ndarray
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    mask_applied: bool = False

    @property
    def valid(self) -> np.ndarray:
        """bool ``[rows, cols]``: True where the point is valid (``x != -1`` and ``z > 0``)."""
        return valid_mask(self.points)

    @property
    def shape(self) -> tuple[int, int]:
        return self.points.shape[:2]

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)`` grid points per voxel; the grid step is ``1/sx`` voxels."""
        s = self.meta.get("scale", [1.0, 1.0])
        return float(s[0]), float(s[1])

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else str(self.meta.get("uuid", ""))

    @property
    def tags(self) -> dict:
        t = self.meta.get("tags")
        return t if isinstance(t, dict) else {}

    def has_tag(self, tag: str) -> bool:
        """VC3D's rule: a tag is set iff its key is present (``null`` counts as set)."""
        return tag in self.tags

    def bbox(self) -> list[list[float]]:
        return compute_bbox(self.points)

    def area_vx2(self) -> float:
        return surface_area_vx2(self.points)


def compute_bbox(points: np.ndarray) -> list[list[float]]:
    """``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` over valid points; all ``-1`` when none."""
    v = valid_mask(points)
    if not v.any():
        return [[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]
    p = points[v]
    return [[float(np.float32(a)) for a in p.min(0)], [float(np.float32(a)) for a in p.max(0)]]


def surface_area_vx2(points: np.ndarray) -> float:
    """Geometric area (voxels²) of all quads whose four corners are valid (two triangles each)."""
    p = points.astype(np.float64)
    v = valid_mask(p)
    q = valid_quads(v)
    if not q.any():
        return 0.0
    a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
    t1 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    t2 = np.linalg.norm(np.cross(b - d, c - d), axis=1)
    return float(0.5 * (t1 + t2).sum())


def area_cm2(area_vx2: float, voxelsize_um: float) -> float:
    """voxels² → cm² for a voxel size in µm: ``vx² × voxelsize² / 1e8``."""
    return float(area_vx2) * float(voxelsize_um) ** 2 / 1e8


def timestamp_name(prefix: str, when: _dt.datetime | None = None) -> str:
    """``<prefix><YYYYmmddHHMMSSmmm>`` (17 digits, local time) as VC names its outputs."""
    when = when or _dt.datetime.now()
    return f"{prefix}{when.strftime('%Y%m%d%H%M%S')}{when.microsecond // 1000:03d}"


# ----------------------------------------------------------------------------------------- reading

def _read_float_tif(path: Path) -> np.ndarray:
    if not path.exists():
        raise FormatError(path, "coordinate tif is missing", "a tifxyz surface needs x.tif, y.tif and z.tif")
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            arr = pages.first.asarray() if len(pages) == 1 else tif.asarray()
    except Exception as exc:
        raise FormatError(path, f"tif cannot be read ({type(exc).__name__}: {exc})",
                          "the file is truncated or corrupt: restore it or delete the surface") from None
    if arr.dtype.kind != "f":
        raise FormatError(path, f"coordinate tif has dtype {arr.dtype}, not float",
                          "write x/y/z as float32 (SampleFormat IEEE float)")
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise FormatError(path, f"coordinate tif must be one 2-D page, got shape {arr.shape}",
                          "write a single-page float32 image")
    return arr.astype(np.float32, copy=False)


def read_meta(path: str | os.PathLike) -> dict:
    """Read and minimally validate a surface's ``meta.json``."""
    path = Path(path)
    if not (path / "x.tif").exists() and any((path / p).exists() for p in _VOLUME_FILES):
        raise _volume_not_surface(path)
    meta = read_json(path / "meta.json", "surface meta.json")
    if not isinstance(meta, dict):
        raise FormatError(path / "meta.json", "meta.json is not a JSON object", "restore the file")
    if meta.get("format") == "zarr":
        raise _volume_not_surface(path)
    if meta.get("format") != "tifxyz":
        raise FormatError(path / "meta.json", f"format is {meta.get('format')!r}, not \"tifxyz\"",
                          "add \"format\": \"tifxyz\" if this is a tifxyz surface")
    scale = meta.get("scale")
    if not (isinstance(scale, list) and len(scale) == 2 and all(isinstance(s, (int, float)) and s > 0
                                                                  for s in scale)):
        raise FormatError(path / "meta.json", f"scale must be two positive numbers, got {scale!r}",
                          "set \"scale\": [1/step, 1/step]")
    return meta


#: files that make a directory a zarr volume (VC's layout: group metadata, level 0)
_VOLUME_FILES = (".zgroup", "zarr.json", "0/.zarray", "0/zarr.json")


def _volume_not_surface(path) -> FormatError:
    """The error for a volume passed where a tifxyz surface belongs (arguments swapped)."""
    return FormatError(path, "is a zarr volume, not a tifxyz surface",
                       "check the argument order (`vcd render VOLUME OUTPUT SEGMENT ...`)")


def read_surface(path: str | os.PathLike, apply_mask: bool = True, channels: bool = False) -> Surface:
    """Load a tifxyz directory the way VC3D does (``z <= 0`` invalid, then ``mask.tif`` page 0).

    Parameters
    ----------
    path : path
        The surface directory (``x.tif``, ``y.tif``, ``z.tif``, ``meta.json``).
    apply_mask : bool
        Set points where ``mask.tif`` page 0 is 0 to invalid (``-1``).
    channels : bool
        Also read the extra channel tifs (e.g. ``generations.tif``) into ``Surface.channels``.

    Returns
    -------
    Surface
        ``points``: float32 ``[rows, cols, 3]`` of ``(x, y, z)`` level-0 voxels, ``-1`` invalid;
        ``meta``: the parsed ``meta.json``.

    Raises
    ------
    FormatError
        Naming the file: a missing directory or coordinate tif, a volume passed as a surface, a bad
        ``meta.json``, grids of different shapes.
    """
    path = Path(path)
    if not path.is_dir():
        raise FormatError(path, "surface directory does not exist", "check the path")
    meta = read_meta(path)
    xyz = [_read_float_tif(path / f"{c}.tif") for c in "xyz"]
    if not (xyz[0].shape == xyz[1].shape == xyz[2].shape):
        raise FormatError(path, f"x/y/z tifs differ in shape {[a.shape for a in xyz]}",
                          "rewrite the surface with three equal-size tifs")
    pts = np.stack(xyz, axis=-1)
    if np.isnan(pts).any():
        raise FormatError(path, "x/y/z tifs contain NaN (VC3D would treat NaN points as valid)",
                          "write -1 for invalid points")
    pts[pts[..., 2] <= 0] = INVALID
    surf = Surface(pts, meta, path)
    if apply_mask and (path / "mask.tif").exists():
        keep = read_mask_grid(path / "mask.tif", pts.shape[0], pts.shape[1])
        pts[~keep] = INVALID
        surf.mask_applied = True
    if channels:
        for name in meta.get("channels", []) or []:
            p = path / f"{name}.tif"
            if p.exists():
                surf.channels[name] = tifffile.imread(p)
    return surf


def read_mask_page0(mask_path: str | os.PathLike) -> np.ndarray:
    """Page 0 of ``mask.tif`` as uint8 grayscale (RGB(A) → luminance). 0 = masked, else keep."""
    mask_path = Path(mask_path)
    page = _read_page0_u8(mask_path, "mask.tif", "export page 0 as 8-bit grayscale, 0 = masked, 255 = keep",
                          why=" (a 16-bit mask masks everything in VC3D)")
    if page.ndim == 3:  # RGB / RGBA / gray+alpha, samples last
        if page.shape[-1] in (3, 4):
            page = np.round(page[..., 0] * 0.299 + page[..., 1] * 0.587 + page[..., 2] * 0.114).astype(np.uint8)
        elif page.shape[-1] == 2:
            page = page[..., 0]
        else:
            raise FormatError(mask_path, f"mask.tif page 0 has unexpected shape {page.shape}",
                              "save page 0 as a single grayscale layer")
    if page.ndim != 2:
        raise FormatError(mask_path, f"mask.tif page 0 has unexpected shape {page.shape}",
                          "save page 0 as a single grayscale layer")
    return page


def read_approval(surface_dir: str | os.PathLike, rows: int, cols: int) -> np.ndarray | None:
    """Per-vertex approvals, as VC3D paints them in ``approval.tif``.

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The surface directory.
    rows, cols : int
        The surface grid's shape; page 0 of ``approval.tif`` must be exactly ``rows × cols``
        (row = image row).

    Returns
    -------
    numpy.ndarray or None
        bool ``[rows, cols]``: nonzero = approved (any channel of an RGB(A) paint); None when the
        surface has no ``approval.tif``.

    Raises
    ------
    FormatError
        Unreadable, not 8-bit, or not the grid's size; the message names the file.
    """
    path = Path(surface_dir) / "approval.tif"
    if not path.exists():
        return None
    page = _read_page0_u8(path, "approval.tif", "save the approvals again from VC3D (8-bit, nonzero = approved)")
    if page.ndim == 3 and page.shape[-1] in (2, 3, 4):
        page = page[..., :3].any(-1) if page.shape[-1] != 2 else page[..., 0]
    if page.ndim != 2:
        raise FormatError(path, f"approval.tif page 0 has unexpected shape {page.shape}",
                          "save page 0 as a single 8-bit layer, nonzero = approved")
    if page.shape != (rows, cols):
        h, w = page.shape
        raise FormatError(path, f"approval.tif is {w}×{h} pixels but the surface grid is {cols}×{rows}: "
                          "approvals are per vertex, so the image must be exactly the grid's size",
                          f"resize or repaint approval.tif to {cols}×{rows} (one pixel per vertex)")
    return page != 0


def _read_page0_u8(path: Path, what: str, fix: str, why: str = "") -> np.ndarray:
    """Page 0 of an 8-bit tif (``mask.tif``, ``approval.tif``): ``what`` names it in errors, ``fix``
    is the hint for a bad dtype and ``why`` is appended to that error."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise FormatError(path, f"{what} has no pages", "save it again")
            page = tif.pages[0].asarray()
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(path, f"{what} cannot be read ({type(exc).__name__}: {exc})",
                          "the file is truncated or still being written: save it again") from None
    if page.dtype != np.uint8:
        raise FormatError(path, f"{what} page 0 has dtype {page.dtype}; it must be 8-bit{why}", fix)
    return page


def resize_nearest(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """OpenCV INTER_NEAREST mapping: ``src = min(floor(dst * (1 / (dst_size / src_size))), src_size-1)``."""
    h, w = img.shape[:2]
    ry = np.minimum(np.floor(np.arange(rows) * (1.0 / (rows / h))).astype(np.int64), h - 1)
    rx = np.minimum(np.floor(np.arange(cols) * (1.0 / (cols / w))).astype(np.int64), w - 1)
    return img[ry[:, None], rx[None, :]]


def read_mask_grid(mask_path: str | os.PathLike, rows: int, cols: int) -> np.ndarray:
    """``mask.tif`` resized (nearest, as OpenCV) to the surface grid as a keep-map.

    Parameters
    ----------
    mask_path : str or os.PathLike
        The mask image (page 0 is read; RGB(A) as luminance).
    rows, cols : int
        The surface grid's shape.

    Returns
    -------
    numpy.ndarray
        bool ``[rows, cols]``: True = keep (mask value nonzero).

    Raises
    ------
    FormatError
        The mask's aspect ratio differs from the grid's.
    """
    page = read_mask_page0(mask_path)
    h, w = page.shape
    fy, fx = h / rows, w / cols
    if abs(fx - fy) > 0.05 * max(fx, fy) and abs(w - fy * cols) > 1.5:
        raise FormatError(mask_path, f"mask.tif is {w}×{h} pixels but the surface grid is {cols}×{rows}: "
                          "the aspect ratio differs, so the mask would land on the wrong points",
                          f"resize the mask to {cols}×{rows} (or an integer multiple) keeping page 0")
    return resize_nearest(page, rows, cols) != 0


def bitmap_sha1(bits: np.ndarray) -> str:
    """sha1 of a bool ``[rows, cols]`` bitmap and its shape: the fingerprint of per-vertex files."""
    return hashlib.sha1(np.packbits(bits).tobytes() + f"{bits.shape[0]}x{bits.shape[1]}".encode()).hexdigest()


def grid_shape(surface_dir: str | os.PathLike) -> tuple[int, int]:
    """``(rows, cols)`` of a surface's grid, from the header of its ``x.tif`` (no pixels read)."""
    path = Path(surface_dir) / "x.tif"
    try:
        with tifffile.TiffFile(path) as tf:
            return tuple(tf.pages[0].shape[:2])
    except Exception as exc:
        raise FormatError(path, f"tif cannot be read ({type(exc).__name__}: {exc})",
                          "the file is truncated or corrupt: restore it or delete the surface") from None


def mask_fingerprint(surface_dir: str | os.PathLike, rows: int | None = None, cols: int | None = None) -> str | None:
    """The mask's fingerprint: :func:`bitmap_sha1` of ``mask.tif``'s keep-bitmap on the surface grid.

    The daemon's watcher and a trace's provenance (``mask_sha1``) both record this value, so they
    can be compared.

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The surface directory.
    rows, cols : int, optional
        The grid's shape (read from ``x.tif`` when not given).

    Returns
    -------
    str or None
        The sha1 hex digest, or None without a ``mask.tif``.
    """
    path = Path(surface_dir) / "mask.tif"
    if not path.exists():
        return None
    if rows is None or cols is None:
        rows, cols = grid_shape(surface_dir)
    return bitmap_sha1(read_mask_grid(path, rows, cols))


# ----------------------------------------------------------------------------------------- writing

def staging_root(target: Path) -> Path:
    """Where to stage a new surface: ``<volpkg>/.vcd/tmp`` for volpkg segment dirs, else
    ``<parent>/.vcd-tmp`` — always on the target's filesystem so the final rename is atomic."""
    parent = target.parent
    if is_volpkg(parent.parent):
        root = state_dir(parent.parent) / "tmp"
    else:
        root = parent / ".vcd-tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_float_tif(path: Path, arr: np.ndarray, compression: str | None) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if compression:
        tifffile.imwrite(path, arr, compression=compression, tile=(256, 256) if min(arr.shape) >= 256 else None)
    else:
        rps = max(1, min(arr.shape[0], 8192 // (4 * max(1, arr.shape[1]))))
        tifffile.imwrite(path, arr, rowsperstrip=rps)


def surface_meta(points: np.ndarray, uuid: str, scale, extra: dict | None = None) -> dict:
    """The six keys ``QuadSurface::save`` always writes, over ``extra`` (which keeps unknown keys)."""
    meta = dict(extra or {})
    meta.update({"format": "tifxyz", "type": "seg", "uuid": uuid,
                 "scale": [float(np.float32(scale[0])), float(np.float32(scale[1]))],
                 "bbox": compute_bbox(points)})
    meta.setdefault("channels", [])
    return meta


def write_surface(path: str | os.PathLike, points: np.ndarray, meta: dict | None = None, *,
                  scale=None, channels: dict[str, np.ndarray] | None = None,
                  mask: np.ndarray | None = None, overlapping: list[str] | None = None,
                  extra_files: dict[str, bytes] | None = None, compression: str | None = None,
                  overwrite: bool = False, sync: bool = True) -> Path:
    """Write a tifxyz surface directory atomically (stage, then rename into place).

    ``points`` is float32 ``[rows, cols, 3]`` of ``(x, y, z)`` voxels, ``-1`` for invalid. The uuid
    is the directory name. Unknown ``meta`` keys are kept. Refuses to replace an existing directory
    unless ``overwrite`` (then the old one is swapped out atomically and removed).

    Parameters
    ----------
    path : path
        The surface directory to create; its name is the surface's uuid.
    points : ndarray, float32 ``[rows, cols, 3]``
        ``(x, y, z)`` level-0 voxels per grid vertex, ``-1`` where invalid.
    meta : dict, optional
        Extra ``meta.json`` keys (``bbox``, ``uuid``, ``format`` and ``scale`` are filled in).
    scale : pair of float, optional
        Grid cells per voxel along (col, row) — VC3D's ``scale`` (``1 / step_size``).
    channels : dict of name -> ndarray ``[rows, cols]``, optional
        Extra per-vertex tifs (``<name>.tif``).
    mask : ndarray bool ``[rows, cols]``, optional
        Written as ``mask.tif`` (True = keep).
    overlapping : list of str, optional
        Names of linked patches (``overlapping.json``).
    extra_files : dict of file name -> bytes, optional
    compression : str, optional
        tifffile compression of the coordinate tifs.
    overwrite : bool
        Replace an existing directory (atomically).
    sync : bool
        fsync the JSON files before the rename (default). False skips it — for throw-away data such as
        the synthetic collections of :mod:`vcd.synth.collection`, where it is ~80 % of a small patch's cost.

    Returns
    -------
    Path
        The written directory.
    """
    path = Path(path)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"points must be [rows, cols, 3], got {points.shape}")
    if np.isnan(points).any():
        raise ValueError("points contain NaN; use -1 for invalid points")
    if path.exists() and not overwrite:
        raise FormatError(path, "surface directory already exists", "choose another name (VC never overwrites)")
    meta = dict(meta or {})
    if scale is None:
        scale = meta.get("scale", [1.0, 1.0])
    channels = dict(channels or {})
    meta = surface_meta(points, path.name, scale, meta)
    meta["channels"] = sorted(set(meta.get("channels", [])) | set(channels))
    stage = Path(tempfile.mkdtemp(prefix=f"{path.name[:100]}.", dir=staging_root(path)))
    try:
        for i, c in enumerate("xyz"):
            _write_float_tif(stage / f"{c}.tif", points[..., i], compression)
        for name, arr in channels.items():
            tifffile.imwrite(stage / f"{name}.tif", arr, compression="lzw", predictor=2)
        if mask is not None:
            _write_mask_file(stage / "mask.tif", mask)
        if overlapping is not None:
            atomic_write_json(stage / "overlapping.json", {"overlapping": sorted(set(overlapping))}, sync)
        for name, data in (extra_files or {}).items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(data)
        atomic_write_bytes(stage / "meta.json", vc_dumps(meta).encode("utf-8"), sync)
        os.chmod(stage, umask_mode(0o777))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{path.name[:100]}.old.", dir=staging_root(path)))
            os.rename(path, old / "d")
            os.rename(stage, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return path


def _write_mask_file(path: Path, mask: np.ndarray, image: np.ndarray | None = None) -> None:
    """VC3D's mask layout: uint8 pages, LZW + predictor 2, NewSubfileType=2, PageNumber=(i, n)."""
    pages = [np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8)]
    if image is not None:
        pages.append(np.asarray(image, dtype=np.uint8))
    with tifffile.TiffWriter(path) as tw:
        for i, page in enumerate(pages):
            tw.write(page, compression="lzw", predictor=2, subfiletype=2,
                     extratags=[(297, "H", 2, (i, len(pages)), True)])


def write_mask(surface_dir: str | os.PathLike, mask: np.ndarray, image: np.ndarray | None = None) -> None:
    """Write a surface's ``mask.tif`` atomically (temp + replace, under the surface lock).

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The tifxyz surface directory.
    mask : numpy.ndarray
        ``[h, w]``, the surface grid ``[rows, cols]`` or a multiple of it (:func:`read_mask_grid`
        resizes it back): 0 = masked, anything else = keep (stored as 0 / 255).
    image : numpy.ndarray, optional
        uint8 image written as the file's second page.
    """
    surface_dir = Path(surface_dir)
    with dir_lock(surface_dir):
        fd, tmp = tempfile.mkstemp(prefix=".mask.tif.vcd-", dir=surface_dir)
        os.fchmod(fd, umask_mode())
        os.close(fd)
        try:
            _write_mask_file(Path(tmp), mask, image)
            os.replace(tmp, surface_dir / "mask.tif")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def update_meta(surface_dir: str | os.PathLike, change: Callable[[dict], dict | None]) -> dict:
    """Read-modify-write ``meta.json`` under the surface lock, atomically; keeps every unknown key.

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The surface directory.
    change : callable
        ``change(meta)`` edits the dict in place or returns a new one.

    Returns
    -------
    dict
        The meta as written.
    """
    surface_dir = Path(surface_dir)
    with dir_lock(surface_dir):
        meta = read_json(surface_dir / "meta.json", "surface meta.json")
        new = change(meta)
        meta = new if isinstance(new, dict) else meta
        atomic_write_json(surface_dir / "meta.json", meta)
    return meta


def set_tag(surface_dir: str | os.PathLike, tag: str, on: bool = True, user: str = "") -> dict:
    """Set or clear a tag exactly as VC3D stores it (the value's shape depends on whether ``tags`` existed).

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The surface directory.
    tag : str
        e.g. ``approved``, ``defective``.
    on : bool
        Set (True) or clear (False).
    user : str
        Recorded with the tag when VC3D would record it.

    Returns
    -------
    dict
        The surface's meta as written.
    """
    def change(meta):
        had_tags = isinstance(meta.get("tags"), dict)
        tags = meta.setdefault("tags", {}) if had_tags else {}
        if on and tag not in tags:
            if not had_tags:
                tags[tag] = {"user": user} if user else None
            else:
                value = {"date": _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")}
                if user:
                    value["user"] = user
                tags[tag] = value
        elif not on:
            tags.pop(tag, None)
        meta["tags"] = tags
    return update_meta(surface_dir, change)

