"""Job kind ``trace`` (``vc_grow_seg_from_segments``). Params: TraceParams keys + ``volume``,
``src_dir``, ``tgt_dir``, ``seed`` (seed patch directory)."""

from __future__ import annotations

from dataclasses import dataclass

from ..trace.params import TraceParams
from .spec import JobSpec, Retry, embedded, path_field

KIND = "trace"


@dataclass(kw_only=True)
class Params:
    volume: str = path_field(help="prediction volume (OME-Zarr directory)")
    src_dir: str = path_field(help="patch directory (the volpkg's paths/)")
    tgt_dir: str = path_field(help="directory the trace is written to")
    seed: str = path_field(help="seed patch directory")
    trace: TraceParams = embedded(TraceParams, help="vc_grow_seg_from_segments params")


#: a trace is asked for by a person who waits for it: above everything automatic
SPEC = JobSpec(KIND, Params, priority=7, retry=Retry(max_attempts=2, backoff_s=5.0),
               wall_seconds=24 * 3600.0)


def run(params: dict, ctx) -> dict:
    """Trace one consensus surface from the patch collection (:func:`vcd.trace.run.run_trace`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``volume``, ``src_dir``, ``tgt_dir``, ``seed`` patch
        directory, every ``TraceParams`` key).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        :func:`vcd.trace.run.run_trace`'s result: ``written``, ``area_cm2`` (cm²), ``corners``,
        ``stop_reason``, …
    """
    from ..trace.run import run_trace  # imported here: submitting must stay light
    p = SPEC.parse(params)
    return run_trace(p.volume, p.src_dir, p.tgt_dir, p.trace.to_dict(), p.seed, progress=ctx.progress,
                     warn=ctx.warn)
