"""Job kind ``winding`` (``vc_tifxyz_winding``): ``winding.tif`` etc. beside the trace. Params: ``trace``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import JobSpec, Retry, path_field

KIND = "winding"


@dataclass(kw_only=True)
class Params:
    trace: str = path_field(help="trace directory")
    volpkg: str | None = path_field(None, help="the volpkg (pipeline jobs carry it; unused here)")


#: a pipeline product after each trace; one queued per trace
SPEC = JobSpec(KIND, Params, priority=1, dedup=lambda p: f"winding:{Path(p.trace).name}",
               retry=Retry(max_attempts=3, backoff_s=5.0))


def run(params: dict, ctx) -> dict:
    """Write the winding-number map of a trace (:func:`vcd.post.winding.write_winding`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``trace``: the trace directory).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        :func:`vcd.post.winding.write_winding`'s summary (``span_wraps``: wraps the trace spans, …).
    """
    from ..post.winding import write_winding  # imported here: submitting must stay light
    return write_winding(SPEC.parse(params).trace)
