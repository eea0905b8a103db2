"""OME-Zarr volumes as VC3D opens them, a chunk-cached trilinear sampler, and a volume writer.

A volume directory ``NAME.zarr`` holds ``meta.json`` (VC's, with ``format: "zarr"``), ``.zgroup``,
``.zattrs`` (OME-NGFF 0.4) and levels ``0``, ``1``, … — level N a 2^N downsample. Arrays are
indexed ``[z, y, x]``; points handed to samplers are ``(x, y, z)`` in level-0 voxels.

Reading goes through zarr-python (:mod:`vcd.formats.zarrio`): zarr v2 or v3 levels, OME-Zarr 0.4
(``.zattrs``) or 0.5 (``zarr.json``), local directories or remote ``http(s)://`` / ``s3://``
stores. Writing (:func:`write_ome_zarr`, ``vcd convert``) stays zarr v2, the format VC3D reads.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import FormatError
from ..kernels.sample import mark_chunks, sample_chunked
from .jsonio import atomic_write_json
from .zarrio import ZarrLevel, create_array, is_remote, join, multiscale_paths, open_group_attrs, read_bytes, \
    remote_cache, write_chunk

log = logging.getLogger("vcd.formats.volume")
_warned_uint16: set[str] = set()


@dataclass
class Volume:
    """An opened OME-Zarr volume: validated ``meta.json`` and pyramid levels."""

    path: Path
    meta: dict
    levels: list[ZarrLevel] = field(default_factory=list)
    url: str | None = None   #: the remote location (``http(s)://…``), None for a local directory

    @property
    def voxelsize(self) -> float:
        """µm per level-0 voxel."""
        return float(self.meta["voxelsize"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Level-0 shape as ``(z, y, x)``."""
        return self.levels[0].shape

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    def sampler(self, level: int = 0, cache_bytes: float = 1e9) -> "ChunkCache":
        """A chunk-cached trilinear sampler over ``level`` (uint8 values, uint16 converted ÷257)."""
        return ChunkCache(self.levels[level], cache_bytes=cache_bytes)

    def read_region_u8(self, z0, z1, y0, y1, x0, x1, level: int = 0) -> np.ndarray:
        """Read a ``[z0:z1, y0:y1, x0:x1]`` box of ``level`` as uint8 (uint16 ÷ 257)."""
        arr = self.levels[level]
        data = arr.read_region(z0, z1, y0, y1, x0, x1)
        return _to_u8(data, arr.path)


def _to_u8(data: np.ndarray, path: Path) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    key = str(Path(path).parent)
    if key not in _warned_uint16:
        _warned_uint16.add(key)
        log.warning("%s: uint16 volume converted on the fly (value // 257); run `vcd convert %s OUT.zarr "
                    "--bytes 1` once for faster jobs", path.parent, path.parent)
    return (data // 257).astype(np.uint8)


def open_volume(path: str | os.PathLike, cache_root: str | os.PathLike | None = None) -> Volume:
    """Open and validate a VC3D volume directory, raising :class:`FormatError` with a fix.

    A remote volume (``http(s)://…``, ``s3://…``) keeps what it reads in a bounded disk cache under
    ``<cache_root>/remote-chunks`` (default location and cap: :func:`vcd.formats.zarrio.remote_cache`).

    Parameters
    ----------
    path : str or os.PathLike
        The volume directory (``meta.json`` + one zarr array per level, ``0`` = full resolution) or
        its URL.
    cache_root : str or os.PathLike, optional
        Where a remote volume's chunk cache lives (default ``$VCD_CACHE_DIR`` / ``~/.cache/vcd``).

    Returns
    -------
    Volume
        The validated volume: ``meta`` (``voxelsize`` µm per level-0 voxel), ``levels`` (level 0
        first), ``shape`` ``(z, y, x)`` voxels of level 0.

    Raises
    ------
    FormatError
        Not a directory, a surface (``x/y/z.tif``) instead of a volume, a bad ``meta.json``, or no
        level ``0``; the message names the file and the fix.
    """
    if is_remote(path):
        return _open_remote(str(path).rstrip("/"), remote_cache(cache_root))
    path = Path(path)
    if not path.is_dir():
        raise FormatError(path, "volume directory does not exist", "pass the path of a .zarr volume directory")
    if all((path / f"{c}.tif").is_file() for c in "xyz"):
        raise _surface_not_volume(path)
    meta = _check_meta(path / "meta.json", read_bytes(path / "meta.json"))
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
    if "0" not in subdirs:
        raise FormatError(path, "volume has no scale \"0\" (full-resolution array)",
                          "store level 0 as sub-directory \"0\" (OME-Zarr multiscale)")
    levels = [ZarrLevel.open(path / name) for name in subdirs]  # VC opens every sub-directory
    return Volume(path, meta, _ordered(path, subdirs, levels))


def _open_remote(url: str, cache) -> Volume:
    """A remote volume: ``meta.json`` and the levels the OME multiscales block lists (else 0, 1, …)."""
    meta = _check_meta(join(url, "meta.json"), read_bytes(join(url, "meta.json"), cache))
    names = multiscale_paths(open_group_attrs(url, cache))
    levels = []
    if names:
        levels = [ZarrLevel.open(join(url, n), cache=cache) for n in names]
    else:  # no multiscales block: probe 0, 1, … as VC3D's level names
        while True:
            try:
                levels.append(ZarrLevel.open(join(url, str(len(levels))), cache=cache))
            except FormatError:
                if not levels:
                    raise
                break
        names = [str(i) for i in range(len(levels))]
    for lvl in levels[1:]:
        if lvl.dtype != levels[0].dtype:
            raise FormatError(lvl.location, "pyramid levels have different dtypes", "regenerate the pyramid")
    return Volume(PurePosixPath(url.split("://", 1)[1]), meta, levels, url=url)  # multiscales: finest first


def _check_meta(meta_path, raw: bytes | None) -> dict:
    if raw is None:
        raise FormatError(meta_path, "volume has no meta.json (VC3D needs it)",
                          "create meta.json with type, uuid, name, width, height, slices, voxelsize and "
                          "\"format\": \"zarr\" (`vcd convert` writes one)")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise FormatError(meta_path, f"volume meta.json is not valid JSON ({exc})", "fix or rewrite it") from None
    if not isinstance(meta, dict):
        raise FormatError(meta_path, "meta.json is not a JSON object", "rewrite it as an object")
    if meta.get("format") == "tifxyz":
        raise _surface_not_volume(str(meta_path).rsplit("/", 1)[0])
    if meta.get("format") != "zarr":
        raise FormatError(meta_path, "meta.json lacks \"format\": \"zarr\" (VC3D then shows no data)",
                          "add \"format\": \"zarr\" to meta.json")
    if not isinstance(meta.get("voxelsize"), (int, float)) or isinstance(meta.get("voxelsize"), bool):
        raise FormatError(meta_path, "meta.json lacks a numeric \"voxelsize\" (µm per voxel)",
                          "add \"voxelsize\": <µm>, e.g. 7.91")
    return meta


def _surface_not_volume(path) -> FormatError:
    """The error for a tifxyz surface passed where a volume belongs (arguments swapped)."""
    return FormatError(path, "is a tifxyz surface, not a volume",
                       "check the argument order (`vcd render VOLUME OUTPUT SEGMENT ...`)")


def _ordered(path, subdirs: list[str], levels: list[ZarrLevel]) -> list[ZarrLevel]:
    """Levels in order 0..N (VC3D's names); gaps or strangers are an error."""
    by_name = dict(zip(subdirs, levels))
    ordered = []
    for i in range(len(subdirs)):
        if str(i) not in by_name:
            raise FormatError(path, f"level directories must be 0..N without gaps, found {subdirs}",
                              "rename or remove the extra directories")
        ordered.append(by_name[str(i)])
    for i, lvl in enumerate(ordered[1:], 1):
        if lvl.dtype != ordered[0].dtype:
            raise FormatError(lvl.location, "pyramid levels have different dtypes", "regenerate the pyramid")
    return ordered


class ChunkPool:
    """A fixed pool of equal-size uint8 chunks that numba kernels index directly.

    ``pool[slot, z, y, x]`` holds loaded chunks; ``slots[cz, cy, cx]`` is the slot of a chunk, ``-1``
    if not loaded, ``-2`` if known absent (reads 0). Eviction is FIFO, but never of a chunk the batch
    being loaded needs. Used by :class:`ChunkCache` (volume chunks) and the grower's distance field."""

    def __init__(self, grid, chunk_shape, capacity: int, fill: int = 0):
        self.capacity = int(capacity)
        self.pool = np.full((self.capacity,) + tuple(int(c) for c in chunk_shape), fill, dtype=np.uint8)
        self.slots = np.full(tuple(int(g) for g in grid), -1, dtype=np.int32)
        self._owner = np.full(self.capacity, -1, dtype=np.int64)  # flat chunk index held by a slot
        self._next = 0

    def _batch(self, cidx, what: str = "chunks") -> set[int]:
        """The flat indices of a batch of chunks ``cidx``; MemoryError when they cannot all be held."""
        if len(cidx) > self.capacity:
            raise MemoryError(f"{len(cidx)} {what} needed at once but the cache holds {self.capacity}; "
                              "raise cache_size")
        return {int(np.ravel_multi_index(tuple(c), self.slots.shape)) for c in cidx}

    def _put(self, c: tuple, data: np.ndarray, needed: set[int]) -> None:
        """Store chunk ``c`` (``[z, y, x]`` uint8) in the next slot not holding a ``needed`` chunk."""
        for _ in range(self.capacity):
            slot = self._next
            self._next = (self._next + 1) % self.capacity
            if self._owner[slot] not in needed:
                break
        if self._owner[slot] >= 0:
            self.slots[np.unravel_index(self._owner[slot], self.slots.shape)] = -1
        self.pool[slot] = data
        self.slots[c] = slot
        self._owner[slot] = np.ravel_multi_index(c, self.slots.shape)


class ChunkCache(ChunkPool):
    """Loads zarr chunks on demand into a :class:`ChunkPool` that numba kernels sample directly.

    Kernels call :func:`vcd.kernels.sample.trilinear_chunked` with ``(pool, slots, chunk_shape,
    shape)``; Python callers use :meth:`sample`.
    """

    def __init__(self, array: ZarrLevel, cache_bytes: float = 1e9):
        self.array = array
        self.chunk_shape = np.asarray(array.chunks, dtype=np.int64)
        self.shape = np.asarray(array.shape, dtype=np.int64)
        chunk_bytes = int(np.prod(array.chunks))
        n_chunks = int(np.prod(array.chunk_grid))
        super().__init__(array.chunk_grid, array.chunks, max(8, min(n_chunks, int(cache_bytes // chunk_bytes))))

    def ensure_points(self, pts: np.ndarray) -> None:
        """Load every chunk that trilinear sampling at ``pts`` (N×3, (x, y, z)) touches."""
        if len(pts) == 0:
            return
        marked = mark_chunks(np.ascontiguousarray(pts, dtype=np.float64), self.chunk_shape, self.shape,
                             np.asarray(self.slots.shape, dtype=np.int64))
        self._load(np.argwhere(marked))

    def _load(self, cidx: np.ndarray) -> None:
        needed = self._batch(cidx)
        missing = [tuple(c) for c in cidx if self.slots[tuple(c)] == -1]
        for c, data in zip(missing, self.array.read_chunks(missing)):
            if data is None:
                self.slots[c] = -2
            else:
                self._put(c, _to_u8(data, self.array.path), needed)

    def sample(self, pts: np.ndarray) -> np.ndarray:
        """Trilinear values (float32) at ``pts`` (N×3, (x, y, z) level voxels); outside reads 0."""
        pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 3)
        grid = np.asarray(self.slots.shape, dtype=np.int64)
        marked = mark_chunks(pts, self.chunk_shape, self.shape, grid)
        if marked.sum() <= self.capacity:
            self._load(np.argwhere(marked))
            return sample_chunked(self.pool, self.slots, self.chunk_shape, self.shape, pts)
        # more chunks than the cache holds: sample in groups of base chunks
        base = np.floor(pts[:, ::-1]).astype(np.int64) // self.chunk_shape
        keys = np.ravel_multi_index(tuple(np.clip(base, 0, grid - 1).T), self.slots.shape)
        uniq = np.unique(keys)
        per_batch = max(1, self.capacity // 8)  # a point's 8 corners touch at most 8 chunks
        out = np.empty(len(pts), dtype=np.float32)
        for i in range(0, len(uniq), per_batch):
            sel = np.nonzero(np.isin(keys, uniq[i:i + per_batch]))[0]
            sub = np.ascontiguousarray(pts[sel])
            self.ensure_points(sub)
            out[sel] = sample_chunked(self.pool, self.slots, self.chunk_shape, self.shape, sub)
        return out


def downsample2(data: np.ndarray, algorithm: str = "max") -> np.ndarray:
    """2× downsample of a ``[z, y, x]`` block by ``max``, ``mean`` or ``nearest`` (odd edges padded)."""
    if algorithm == "nearest":
        return data[::2, ::2, ::2]
    pad = [(0, s % 2) for s in data.shape]
    if any(p[1] for p in pad):
        data = np.pad(data, pad, mode="edge")
    z, y, x = data.shape
    blocks = data.reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    if algorithm == "max":
        return blocks.max(axis=(1, 3, 5))
    if algorithm == "mean":
        return blocks.mean(axis=(1, 3, 5), dtype=np.float32).round().astype(data.dtype)
    raise ValueError(f"unknown downsampling algorithm {algorithm!r} (use max, mean or nearest)")


def volume_meta(name: str, uuid: str, shape_zyx, voxelsize: float) -> dict:
    """VC3D's volume ``meta.json`` content for a level-0 shape ``(z, y, x)``."""
    return {"format": "zarr", "height": int(shape_zyx[1]), "max": 255.0, "min": 0.0, "name": name,
            "slices": int(shape_zyx[0]), "type": "vol", "uuid": uuid, "voxelsize": float(voxelsize),
            "width": int(shape_zyx[2])}


def write_ome_zarr(path: str | os.PathLike, data: np.ndarray, voxelsize: float, name: str | None = None,
                   n_levels: int = 3, chunks=(64, 64, 64), algorithm: str = "max") -> Volume:
    """Write a uint8 ``[z, y, x]`` array as a VC3D-ready OME-Zarr with ``n_levels`` levels.

    Empty chunks are not written (they read as 0). ``meta.json`` is written last, so a reader never
    sees a volume without data.

    Parameters
    ----------
    path : str or os.PathLike
        The volume directory to create.
    data : numpy.ndarray
        uint8 ``[z, y, x]`` level-0 voxels.
    voxelsize : float
        µm per level-0 voxel (``meta.json``'s ``voxelsize``).
    name : str, optional
        The volume's name in ``meta.json`` (default: the directory name).
    n_levels : int
        Pyramid levels, each 2× smaller per axis than the last.
    chunks : tuple of int
        Chunk shape ``(z, y, x)`` voxels.
    algorithm : str
        Downsampling of the levels above 0: ``max``, ``mean`` or ``nearest`` (:func:`downsample2`).

    Returns
    -------
    Volume
        The written volume, opened.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    level = np.ascontiguousarray(data, dtype=np.uint8)
    for n in range(n_levels):
        arr = create_array(path / str(n), level.shape, chunks=chunks)
        gz, gy, gx = arr.chunk_grid
        cz, cy, cx = chunks
        for iz in range(gz):
            for iy in range(gy):
                for ix in range(gx):
                    write_chunk(arr, iz, iy, ix, level[iz * cz:(iz + 1) * cz, iy * cy:(iy + 1) * cy,
                                                       ix * cx:(ix + 1) * cx])
        if n + 1 < n_levels:
            level = downsample2(level, algorithm)
    write_ome_metadata(path, n_levels)
    atomic_write_json(path / "meta.json", volume_meta(name or path.stem, path.stem, data.shape, voxelsize))
    return open_volume(path)


def write_ome_metadata(path: Path, n_levels: int) -> None:
    """``.zgroup`` and an OME-NGFF 0.4 ``.zattrs`` multiscales block (axes z, y, x)."""
    atomic_write_json(path / ".zgroup", {"zarr_format": 2})
    datasets = [{"path": str(n), "coordinateTransformations": [{"type": "scale", "scale": [2.0 ** n] * 3}]}
                for n in range(n_levels)]
    atomic_write_json(path / ".zattrs", {"multiscales": [{
        "version": "0.4", "name": path.stem, "datasets": datasets,
        "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]}]})
