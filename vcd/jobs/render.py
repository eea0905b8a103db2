"""Job kind ``render`` (``vc_render_tifxyz``). Params: ``trace`` (or ``segment``), optional ``volume``
(default: the volpkg's CT volume, else its prediction), ``out`` (default ``<segment>/layers/%02d.tif``),
``scale`` (1.0), ``group`` (0), ``layers`` (21; the daemon pipeline may ask for fewer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..formats.volpkg import is_volpkg, open_volpkg
from .spec import JobSpec, Retry, param, path_field

KIND = "render"


@dataclass(kw_only=True)
class Params:
    trace: str | None = path_field(None, help="surface to render (trace directory)")
    segment: str | None = path_field(None, help="alternative to trace: any surface directory")
    volume: str | None = path_field(None, help="volume to sample; default the volpkg's CT, else its prediction")
    out: str | None = path_field(None, help="output pattern; default <surface>/layers/%02d.tif")
    volpkg: str | None = path_field(None, help="the volpkg (to find its volumes)")
    scale: float = param(1.0, help="output pixels per surface pixel")
    group: int = param(0, help="render group index")
    layers: int = param(21, help="layers along the normal")
    processes: int = param(1, help="worker processes")


#: a pipeline product after each trace; one queued per surface
SPEC = JobSpec(KIND, Params, priority=1, dedup=lambda p: f"render:{Path(p.segment or p.trace or '').name}",
               retry=Retry(max_attempts=3, backoff_s=5.0))


def _default_volume(seg: Path, volpkg) -> Path:
    roots = [Path(volpkg)] if volpkg else []
    roots.append(seg.parent.parent)
    for root in roots:
        if is_volpkg(root) and (root / "volumes").is_dir():
            vp = open_volpkg(root)
            name = vp.ct_name() or (vp.volume_names() or [None])[0]  # render the CT, not the prediction
            if name:
                return vp.volumes_dir / name
    raise InputError(seg, "no volume given and no volpkg volumes/ found", "pass volume=<path to .zarr>")


def run(params: dict, ctx) -> dict:
    """Render a surface's layers from the CT (:func:`vcd.post.render.render`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``segment`` or ``trace``, ``volume`` — default the
        volpkg's CT —, ``out``, ``scale``, ``group``, ``layers``).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        :func:`vcd.post.render.render`'s summary (layers written, their shape).
    """
    from ..post.render import render  # imported here: submitting must stay light
    p = SPEC.parse(params)
    if not (p.segment or p.trace):
        raise InputError(None, "render job params lack 'trace'", "pass trace=<surface directory>")
    seg = Path(p.segment or p.trace)
    vol = Path(p.volume) if p.volume else _default_volume(seg, p.volpkg or ctx.volpkg)
    out = p.out or str(seg / "layers" / "%02d.tif")
    return render(vol, out, seg, p.scale, p.group, p.layers, processes=p.processes, progress=ctx.progress)
