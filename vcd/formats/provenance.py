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

from ..errors import FormatError, InputError
from .jsonio import read_json

#: the provenance file's name inside a trace directory
PROVENANCE = "vcd_provenance.json"
#: the per-corner supporters' file's name inside a trace directory
SUPPORTERS = "vcd_supporters.npz"


def provenance_path(trace_dir: str | os.PathLike) -> Path:
    """``<trace_dir>/vcd_provenance.json``."""
    return Path(trace_dir) / PROVENANCE


def read_provenance(trace_dir: str | os.PathLike) -> dict | None:
    """A trace's provenance (:data:`PROVENANCE`: seed, params, volume, patches used with their mask
    fingerprints).

    Parameters
    ----------
    trace_dir : str or os.PathLike
        The trace directory.

    Returns
    -------
    dict or None
        The provenance, or None when the trace has none (not made by vcd).

    Raises
    ------
    FormatError
        The file is unreadable or not a JSON object; the message names it.
    """
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


def recorded_run(trace_dir: str | os.PathLike, fix: str) -> dict:
    """How to run a trace again, from its provenance: what ``vcd trace --resume`` and the
    ``retrace`` job both start from (the new trace goes beside the old one).

    Parameters
    ----------
    trace_dir : path
        The trace directory.
    fix : str
        What the user can do instead when the trace has no provenance (the error's fix).

    Returns
    -------
    dict
        ``volume`` (path), ``src_dir`` (the patch directory), ``tgt_dir`` (the trace's parent),
        ``seed`` (path of the seed patch: ``src_dir / seed``), ``params`` (the tracer params dict);
        each None (``params``: ``{}``) when the provenance does not record it.

    Raises
    ------
    InputError
        The trace has no provenance (not made by vcd). :class:`FormatError` when it is unreadable.
    """
    trace = Path(trace_dir)
    prov = read_provenance(trace)
    if prov is None:
        raise InputError(trace, f"the trace has no {PROVENANCE}", fix)
    src, seed = prov.get("src_dir"), prov.get("seed")
    return {"volume": prov.get("volume") or None, "src_dir": src or None, "tgt_dir": str(trace.parent),
            "seed": str(Path(src) / seed) if src and seed else None, "params": dict(prov.get("params") or {})}
