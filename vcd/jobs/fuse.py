"""Job kind ``fuse`` (``vc_fill_quadmesh``). Params: ``params`` (FillParams keys), ``inputs``
([[trace, winding, weight], ...]), optional ``out_dir``."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import JobSpec, Retry, param, path_field

KIND = "fuse"


@dataclass(kw_only=True)
class Params:
    inputs: list = path_field(help="[[trace dir, winding.tif, weight], ...]")
    params: dict = param({}, help="vc_fill_quadmesh params (FillParams keys)")
    out_dir: str | None = path_field(None, help="output directory; default beside the first trace")


#: asked for by a person once traces exist; no dedup (inputs differ run to run)
SPEC = JobSpec(KIND, Params, priority=1, retry=Retry(max_attempts=2, backoff_s=5.0))


def run(params: dict, ctx) -> dict:
    """Fuse traces into one surface and inpaint its holes (:func:`vcd.post.fusion.fill_quadmesh`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``inputs``: ``[trace, winding.tif or None, weight]``,
        ``params``: ``FillParams`` keys, ``out_dir``).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        :func:`vcd.post.fusion.fill_quadmesh`'s summary (``written``, …).
    """
    from ..post.fusion import fill_quadmesh  # imported here: submitting must stay light
    p = SPEC.parse(params)
    return fill_quadmesh(p.params, [tuple(i) for i in p.inputs], p.out_dir, progress=ctx.progress)
