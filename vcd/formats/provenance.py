"""A trace's provenance: ``vcd_provenance.json`` (+ ``vcd_supporters.npz``) inside the trace directory.

VC3D ignores both files. The JSON answers "which traces used patch P?" and holds what a retrace
needs: ``{"version": 1, "seed": name, "params": {...}, "volume": path, "src_dir": path, "patches":
{name: {"mask_sha1": sha1 | null, "approval_sha1": sha1 | null, "tags": [...], "corners": n}},
"supporters": "vcd_supporters.npz", "retrace_of": name | null}`` (written by
:func:`vcd.trace.run.write_trace`; ``mask_sha1`` is :func:`vcd.formats.tifxyz.mask_fingerprint`, the
same value the daemon's watcher stores; ``approval_sha1`` is :func:`vcd.formats.tifxyz.bitmap_sha1`
of the patch's ``approval.tif`` as read, null without one).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FormatError
from .jsonio import read_json

#: the provenance file's name inside a trace directory
PROVENANCE = "vcd_provenance.json"
#: the per-corner supporters' file's name inside a trace directory
SUPPORTERS = "vcd_supporters.npz"


def provenance_path(trace_dir: str | os.PathLike) -> Path:
    """``<trace_dir>/vcd_provenance.json``."""
    return Path(trace_dir) / PROVENANCE


def read_provenance(trace_dir: str | os.PathLike) -> dict | None:
    """The trace's provenance dict, or None when the trace has none (not made by vcd). Raises
    :class:`FormatError` naming the file when it is unreadable or not a JSON object."""
    path = provenance_path(trace_dir)
    if not path.exists():
        return None
    prov = read_json(path, "trace provenance")
    if not isinstance(prov, dict):
        raise FormatError(path, "trace provenance is not a JSON object", "trace it again with vcd")
    return prov


def provenance_patches(prov: dict | None) -> list[str]:
    """Sorted names of the patches a trace used, from its provenance (``[]`` without one)."""
    patches = (prov or {}).get("patches") or {}
    return sorted(patches) if isinstance(patches, dict) else []
