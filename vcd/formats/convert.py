"""``vcd convert``: any uint8/uint16 zarr volume (v2 or v3, OME-Zarr 0.4/0.5, local or remote) → a
VC3D-ready uint8 OME-Zarr **v2** pyramid (VC3D reads only v2).

Works chunk by chunk (never the whole volume in memory): level 0 is converted one output chunk at
a time (uint16 → uint8 as ``v // 257``, VC3D's rule), then each level N+1 is built from 2×2×2
blocks of level N with ``mean``, ``max`` or ``nearest``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FormatError, InputError
from .jsonio import atomic_write_json, umask_mode
from .volume import _to_u8, downsample2, volume_meta, write_ome_metadata
from .zarrio import ZarrLevel, create_array, is_remote, join, multiscale_paths, open_group_attrs, read_bytes, \
    write_chunk


def _source_level0(src) -> ZarrLevel:
    """Level 0 of ``src``: the OME multiscales' first dataset, else ``src/0``, else ``src`` itself.

    Only 3-D uint8/uint16 is required: what VC3D cannot read (v3, other codecs) is what we convert."""
    names = multiscale_paths(open_group_attrs(src))
    if names:
        return ZarrLevel.open(join(src, names[0]), vc_rules=False)
    try:
        return ZarrLevel.open(join(src, "0"), vc_rules=False)
    except FormatError:
        return ZarrLevel.open(src, vc_rules=False)


def _source_voxelsize(src):
    raw = read_bytes(join(src, "meta.json"))
    if raw is None:
        return None
    try:
        m = json.loads(raw)
    except ValueError:
        return None
    return m.get("voxelsize") if isinstance(m, dict) else None


def convert_volume(src: str | os.PathLike, dst: str | os.PathLike, n_bytes: int = 1, algorithm: str = "mean",
                   n_levels: int = 6, chunks=(64, 64, 64), voxelsize: float | None = None,
                   progress: Callable[[float, str], None] | None = None) -> Path:
    """Convert ``src`` (a .zarr with level ``0``, or a bare zarr array) into ``dst``. The volume is
    written into a hidden temporary directory beside ``dst`` and renamed into place when complete,
    so an interrupted conversion leaves no half-written ``dst``."""
    src = str(src).rstrip("/") if is_remote(src) else Path(src)
    dst = Path(dst)
    if n_bytes != 1:
        raise InputError(None, f"--bytes {n_bytes} is not supported", "use --bytes 1 (VC3D reads uint8 best)")
    if algorithm not in ("mean", "max", "nearest"):
        raise InputError(None, f"unknown --algorithm {algorithm!r}", "use mean, max or nearest")
    if dst.exists() and any(dst.iterdir()):
        raise InputError(dst, "output exists and is not empty", "choose a new output path")
    arr = _source_level0(src)
    if voxelsize is None:
        voxelsize = _source_voxelsize(src)
        if voxelsize is None:
            raise InputError(src, "no meta.json with voxelsize next to the input", "pass --voxelsize <µm>")
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    os.chmod(work, umask_mode(0o777))
    try:
        n_levels = _write_pyramid(arr, work, n_levels, chunks, algorithm, progress)
        write_ome_metadata(work, n_levels)
        atomic_write_json(work / "meta.json", volume_meta(dst.stem, dst.stem, arr.shape, float(voxelsize)))
        if dst.exists():
            dst.rmdir()  # checked empty above
        os.replace(work, dst)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if progress:
        progress(1.0, f"done: {n_levels} levels")
    return dst


def _write_pyramid(arr, dst: Path, n_levels: int, chunks, algorithm: str, progress) -> int:
    """Level 0 from ``arr`` (as uint8) and up to ``n_levels - 1`` halvings into ``dst``; returns the
    number of levels written."""
    out = create_array(dst / "0", arr.shape, chunks=chunks)
    total = int(np.prod(out.chunk_grid)) * 2
    done = 0
    cz, cy, cx = chunks
    for iz in range(out.chunk_grid[0]):
        for iy in range(out.chunk_grid[1]):
            for ix in range(out.chunk_grid[2]):
                block = arr.read_region(iz * cz, (iz + 1) * cz, iy * cy, (iy + 1) * cy, ix * cx, (ix + 1) * cx)
                block = _to_u8(block, arr.path)
                write_chunk(out, iz, iy, ix, block)
                done += 1
                if progress:
                    progress(done / total, "level 0")
    # pyramid
    prev = out
    for n in range(1, n_levels):
        shape = tuple(-(-s // 2) for s in prev.shape)
        if min(shape) < 1:
            n_levels = n
            break
        lvl = create_array(dst / str(n), shape, chunks=chunks)
        for iz in range(lvl.chunk_grid[0]):
            for iy in range(lvl.chunk_grid[1]):
                for ix in range(lvl.chunk_grid[2]):
                    src_block = prev.read_region(2 * iz * cz, 2 * (iz + 1) * cz, 2 * iy * cy, 2 * (iy + 1) * cy,
                                                 2 * ix * cx, 2 * (ix + 1) * cx)
                    write_chunk(lvl, iz, iy, ix, downsample2(src_block, algorithm))
        prev = lvl
        if progress:
            progress(0.5 + 0.5 * n / n_levels, f"level {n}")
        if max(shape) <= max(chunks):
            n_levels = n + 1
            break
    return n_levels
