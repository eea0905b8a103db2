"""Minimal zarr v2 array access with VC3D's (z5's) rules.

We read chunks ourselves (numcodecs for decompression) so that the rules VC3D applies are
applied here too: a missing chunk reads 0 whatever ``fill_value`` says, nested chunk keys need
``dimension_separator: "/"``, and the ``.zarray`` fields z5 rejects are rejected with a fix.
Arrays are indexed ``[z, y, x]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numcodecs
import numpy as np

from ..errors import FormatError
from .jsonio import atomic_write_bytes, read_json, vc_dumps

#: dtypes VC3D reads (``|u1`` and ``<u2``); the byte-order variants are normalised.
_DTYPES = {"|u1": np.uint8, "<u1": np.uint8, "uint8": np.uint8, "<u2": np.uint16, "uint16": np.uint16}
_COMPRESSORS = {"blosc", "zlib", "gzip"}


@dataclass
class ZarrArray:
    """One zarr v2 array directory (one pyramid level). Shape and chunks are ``(z, y, x)``."""

    path: Path
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    dtype: np.dtype
    separator: str
    compressor: dict | None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ZarrArray":
        """Open and validate ``path/.zarray``; raise :class:`FormatError` naming the problem."""
        path = Path(path)
        zpath = path / ".zarray"
        if not zpath.exists():
            raise FormatError(path, "not a zarr v2 array (no .zarray)",
                              "VC3D opens every sub-directory of a .zarr as an array: remove stray folders, "
                              "or convert zarr v3 stores with `vcd convert`")
        meta = read_json(zpath, ".zarray")
        if not isinstance(meta, dict) or meta.get("zarr_format") != 2:
            raise FormatError(zpath, "zarr_format must be 2", "rewrite the volume as zarr v2 (`vcd convert`)")
        dtype_name = meta.get("dtype")
        if dtype_name not in _DTYPES:
            raise FormatError(zpath, f"dtype {dtype_name!r} is not uint8 or uint16",
                              "convert the volume to uint8 with `vcd convert IN OUT --bytes 1`")
        if dtype_name == "<u1":
            raise FormatError(zpath, "dtype '<u1' is rejected by VC3D's zarr library", "write dtype '|u1'")
        shape = meta.get("shape")
        chunks = meta.get("chunks")
        if not (isinstance(shape, list) and len(shape) == 3 and isinstance(chunks, list) and len(chunks) == 3):
            raise FormatError(zpath, f"array must be 3-D [z, y, x], got shape {shape}",
                              "store one scalar channel per volume")
        if meta.get("fill_value", 0) is None:
            raise FormatError(zpath, "fill_value is null, which VC3D cannot open", "set \"fill_value\": 0")
        if meta.get("order", "C") != "C":
            raise FormatError(zpath, "order must be \"C\"", "rewrite the array in C order (`vcd convert`)")
        comp = meta.get("compressor")
        if comp is not None and comp.get("id") not in _COMPRESSORS:
            raise FormatError(zpath, f"compressor {comp.get('id')!r} is not readable by VC3D",
                              "recompress with blosc or zlib (`vcd convert`)")
        if meta.get("filters"):
            raise FormatError(zpath, "filters are not supported by VC3D", "rewrite without filters")
        sep = meta.get("dimension_separator", ".")
        if sep not in (".", "/"):
            raise FormatError(zpath, f"dimension_separator {sep!r} is invalid", "use \".\" or \"/\"")
        if sep == "." and (path / "0").is_dir() and not (path / "0.0.0").exists():
            raise FormatError(zpath, "chunks are nested (0/0/0) but .zarray has no dimension_separator; "
                              "VC3D would read all zeros", "add \"dimension_separator\": \"/\" to .zarray")
        return cls(path, tuple(int(s) for s in shape), tuple(int(c) for c in chunks),
                   np.dtype(_DTYPES[dtype_name]), sep, comp)

    @property
    def chunk_grid(self) -> tuple[int, int, int]:
        """Number of chunks along (z, y, x)."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))

    def chunk_path(self, cz: int, cy: int, cx: int) -> Path:
        return self.path / self.separator.join((str(cz), str(cy), str(cx)))

    def read_chunk(self, cz: int, cy: int, cx: int) -> np.ndarray | None:
        """Return chunk ``(cz, cy, cx)`` as a full-size ``[z, y, x]`` array, or None if absent."""
        p = self.chunk_path(cz, cy, cx)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        try:
            if self.compressor is not None:
                raw = numcodecs.get_codec(self.compressor).decode(raw)
            arr = np.frombuffer(raw, dtype=self.dtype)
            return arr.reshape(self.chunks)
        except Exception as exc:  # corrupt/truncated chunk
            raise FormatError(p, f"chunk cannot be decoded ({exc})",
                              "the chunk file is corrupt or truncated: re-copy the volume") from None

    def read_region(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Read the box ``[z0:z1, y0:y1, x0:x1]`` (clipped to the array; outside reads 0)."""
        out = np.zeros((z1 - z0, y1 - y0, x1 - x0), dtype=self.dtype)
        cz_, cy_, cx_ = self.chunks
        for cz in range(max(z0, 0) // cz_, (min(z1, self.shape[0]) - 1) // cz_ + 1):
            for cy in range(max(y0, 0) // cy_, (min(y1, self.shape[1]) - 1) // cy_ + 1):
                for cx in range(max(x0, 0) // cx_, (min(x1, self.shape[2]) - 1) // cx_ + 1):
                    chunk = self.read_chunk(cz, cy, cx)
                    if chunk is None:
                        continue
                    bz, by, bx = cz * cz_, cy * cy_, cx * cx_
                    sz = slice(max(z0, bz), min(z1, bz + cz_, self.shape[0]))
                    sy = slice(max(y0, by), min(y1, by + cy_, self.shape[1]))
                    sx = slice(max(x0, bx), min(x1, bx + cx_, self.shape[2]))
                    out[sz.start - z0:sz.stop - z0, sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0] = \
                        chunk[sz.start - bz:sz.stop - bz, sy.start - by:sy.stop - by, sx.start - bx:sx.stop - bx]
        return out

    def read_all(self) -> np.ndarray:
        return self.read_region(0, self.shape[0], 0, self.shape[1], 0, self.shape[2])


def default_compressor() -> dict:
    """Blosc/zstd, explicitly (zarr-python 3 defaults are not readable by VC3D)."""
    return {"blocksize": 0, "clevel": 5, "cname": "zstd", "id": "blosc", "shuffle": 1}


def create_array(path: str | os.PathLike, shape, chunks=(64, 64, 64), dtype="|u1",
                 separator: str = "/", compressor: dict | None = None) -> ZarrArray:
    """Create an empty VC3D-compatible zarr v2 array directory and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    comp = default_compressor() if compressor is None else compressor
    meta = {"chunks": list(chunks), "compressor": comp, "dimension_separator": separator,
            "dtype": dtype, "fill_value": 0, "filters": None, "order": "C",
            "shape": [int(s) for s in shape], "zarr_format": 2}
    atomic_write_bytes(path / ".zarray", vc_dumps(meta).encode())
    return ZarrArray.open(path)


def write_chunk(arr: ZarrArray, cz: int, cy: int, cx: int, data: np.ndarray, skip_empty: bool = True) -> None:
    """Write one chunk (padded to full chunk size); all-zero chunks are skipped (they read as 0)."""
    full = np.zeros(arr.chunks, dtype=arr.dtype)
    full[:data.shape[0], :data.shape[1], :data.shape[2]] = data
    if skip_empty and not full.any():
        return
    raw = full.tobytes()
    if arr.compressor is not None:
        raw = numcodecs.get_codec(arr.compressor).encode(raw)
    p = arr.chunk_path(cz, cy, cx)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, bytes(raw))


def write_array(arr: ZarrArray, data: np.ndarray) -> None:
    """Write a whole ``[z, y, x]`` array chunk by chunk."""
    cz_, cy_, cx_ = arr.chunks
    gz, gy, gx = arr.chunk_grid
    for cz in range(gz):
        for cy in range(gy):
            for cx in range(gx):
                write_chunk(arr, cz, cy, cx, data[cz * cz_:(cz + 1) * cz_, cy * cy_:(cy + 1) * cy_,
                                                  cx * cx_:(cx + 1) * cx_])
