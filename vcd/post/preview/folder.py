"""The preview folder ``<volpkg>/.vcd/previews/``: every standard preview rewritten (what the daemon does)."""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import FormatError, InputError
from ...formats.jsonio import atomic_write_json
from ...formats.volpkg import list_traces, open_volpkg
from .common import pick_volume
from .slices import preview_slice
from .traces import preview_trace
from .density import preview_density


# ------------------------------------------------------------------------------------------- folder

def refresh_previews(volpkg, n_traces: int = 3, tgt: int | None = None) -> list[Path]:
    """Write the standard previews into ``<volpkg>/.vcd/previews/`` (see the module docstring);
    ``tgt``: the daemon's ``tgt_overlap_count`` (:func:`vcd.daemon.config.tgt_overlap_count`;
    default VC3D's 20), for the density preview and the slices' link colours.

    Each preview that fails (e.g. no volume yet) is skipped; returns the files written."""
    vp = open_volpkg(volpkg)
    out = vp.state_dir / "previews"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict = {"updated": time.time(), "files": [], "errors": {}}

    def attempt(name, fn):
        try:
            res = fn(out / name)
            written.append(out / name)
            index["files"].append(name)
            return res
        except (FormatError, InputError, OSError, ValueError, MemoryError) as exc:
            index["errors"][name] = str(getattr(exc, "message", exc))
            return None

    try:
        Z = pick_volume(vp).shape[0]
    except (FormatError, InputError):
        Z = None
    if Z:
        for pct in (25, 50, 75):
            attempt(f"slice_z{pct}.png", lambda p, pct=pct: preview_slice(vp.path, p, axis="z", index=Z * pct // 100,
                                                                     tgt=tgt))
        attempt("slice_y50.png", lambda p: preview_slice(vp.path, p, axis="y", tgt=tgt))
    dens = attempt("density.png", lambda p: preview_density(vp.path, p, tgt=tgt))
    if dens:
        index["density"] = dens["stats"]
    traces = [d for d, _ in list_traces(vp.path)]
    traces = sorted(traces, key=lambda d: (d / "meta.json").stat().st_mtime, reverse=True)[:n_traces]
    keep = set()
    for t in traces:
        for suffix, qa in (("", False), ("_qa", True)):
            name = f"trace_{t.name}{suffix}.png"
            keep.add(name)
            if qa and not (t / "qa.tif").exists():
                continue
            attempt(name, lambda p, t=t, qa=qa: preview_trace(t, p, qa=qa))
    for old in out.glob("trace_*.png"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    atomic_write_json(out / "index.json", index)
    return written
