"""``vcd convert``: any uint8/uint16 zarr v2 volume → a VC3D-ready uint8 OME-Zarr with a pyramid.

Works chunk by chunk (never the whole volume in memory): level 0 is converted one output chunk at
a time (uint16 → uint8 as ``v // 257``, VC3D's rule), then each level N+1 is built from 2×2×2
blocks of level N with ``mean``, ``max`` or ``nearest``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FormatError, InputError
from .jsonio import atomic_write_json, read_json
from .volume import downsample2, volume_meta, write_ome_metadata
from .zarr_v2 import ZarrArray, create_array, write_chunk


def convert_volume(src: str | os.PathLike, dst: str | os.PathLike, n_bytes: int = 1, algorithm: str = "mean",
                   n_levels: int = 6, chunks=(64, 64, 64), voxelsize: float | None = None,
                   progress: Callable[[float, str], None] | None = None) -> Path:
    """Convert ``src`` (a .zarr with level ``0``, or a bare zarr array) into ``dst``."""
    src, dst = Path(src), Path(dst)
    if n_bytes != 1:
        raise InputError(None, f"--bytes {n_bytes} is not supported", "use --bytes 1 (VC3D reads uint8 best)")
    if algorithm not in ("mean", "max", "nearest"):
        raise InputError(None, f"unknown --algorithm {algorithm!r}", "use mean, max or nearest")
    if dst.exists() and any(dst.iterdir()):
        raise InputError(dst, "output exists and is not empty", "choose a new output path")
    level0 = src / "0" if (src / "0" / ".zarray").exists() else src
    arr = ZarrArray.open(level0)
    if voxelsize is None:
        meta_path = src / "meta.json"
        if meta_path.exists():
            m = read_json(meta_path, "volume meta.json")
            voxelsize = m.get("voxelsize") if isinstance(m, dict) else None
        if voxelsize is None:
            raise InputError(src, "no meta.json with voxelsize next to the input", "pass --voxelsize <µm>")
    # level 0
    out = create_array(dst / "0", arr.shape, chunks=chunks)
    total = int(np.prod(out.chunk_grid)) * 2
    done = 0
    cz, cy, cx = chunks
    for iz in range(out.chunk_grid[0]):
        for iy in range(out.chunk_grid[1]):
            for ix in range(out.chunk_grid[2]):
                block = arr.read_region(iz * cz, (iz + 1) * cz, iy * cy, (iy + 1) * cy, ix * cx, (ix + 1) * cx)
                if block.dtype == np.uint16:
                    block = (block // 257).astype(np.uint8)
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
    write_ome_metadata(dst, n_levels)
    atomic_write_json(dst / "meta.json", volume_meta(dst.stem, dst.stem, arr.shape, float(voxelsize)))
    return dst
