"""Job kind ``retrace``: re-run a trace with the params, seed, volume and patch directory recorded in
its provenance, so annotations made since (masks, approved/defective) take effect. Writes a new
``auto_trace_<ts>`` beside the old one with ``retrace_of`` = the old name (the old trace is kept).
Params: ``trace`` (trace directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..formats.provenance import PROVENANCE, provenance_path, recorded_run
from .spec import JobSpec, Retry, path_field

KIND = "retrace"


@dataclass(kw_only=True)
class Params:
    trace: str = path_field(help=f"trace directory (with {PROVENANCE})")


#: after an annotator's edit: above growth, below linking; one queued retrace per trace
SPEC = JobSpec(KIND, Params, priority=3, dedup=lambda p: f"retrace:{Path(p.trace).name}",
               retry=Retry(max_attempts=3, backoff_s=5.0),
               wall_seconds=24 * 3600.0)


def run(params: dict, ctx) -> dict:
    """Rerun a trace from its provenance (:func:`vcd.formats.provenance.recorded_run`), beside the old one.

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``trace``: the trace directory).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        :func:`vcd.trace.run.run_trace`'s result plus ``retrace_of`` (the old trace's name).
    """
    from ..trace.run import run_trace  # imported here: submitting must stay light
    trace = Path(SPEC.parse(params).trace)
    rec = recorded_run(trace, "only traces made by vcd can be retraced")
    missing = [k for k in ("src_dir", "seed", "volume") if not rec[k]]
    if missing:
        raise InputError(provenance_path(trace), f"provenance lacks {', '.join(missing)}",
                         "retrace it by hand with vcd trace, or trace it again with vcd (which records them)")
    res = run_trace(rec["volume"], rec["src_dir"], rec["tgt_dir"], rec["params"], rec["seed"],
                    progress=ctx.progress, warn=ctx.warn, retrace_of=trace.name)
    res["retrace_of"] = trace.name
    return res
