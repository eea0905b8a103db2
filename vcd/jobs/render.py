"""Job kind ``render`` (``vc_render_tifxyz``). Params: ``trace`` (or ``segment``), optional ``volume``
(default: the volpkg's CT volume, else its prediction), ``out`` (default ``<segment>/layers/%02d.tif``),
``scale`` (1.0), ``group`` (0), ``layers`` (21; the daemon pipeline may ask for fewer)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..post.render import render

KIND = "render"


def _default_volume(seg: Path, volpkg) -> Path:
    roots = [Path(volpkg)] if volpkg else []
    roots.append(seg.parent.parent)
    for root in roots:
        vols = sorted(p for p in (root / "volumes").glob("*") if p.is_dir()) if (root / "volumes").is_dir() else []
        if vols:
            ct = [v for v in vols if "pred" not in v.name and "surface" not in v.name]
            return (ct or vols)[0]
    raise InputError(seg, "no volume given and no volpkg volumes/ found", "pass volume=<path to .zarr>")


def run(params: dict, ctx) -> dict:
    seg = Path(params.get("segment") or params["trace"])
    vol = Path(params["volume"]) if params.get("volume") else _default_volume(seg, params.get("volpkg") or ctx.volpkg)
    out = params.get("out") or str(seg / "layers" / "%02d.tif")
    return render(vol, out, seg, float(params.get("scale", 1.0)), int(params.get("group", 0)),
                  int(params.get("layers", 21)), processes=int(params.get("processes", 1)), progress=ctx.progress)
