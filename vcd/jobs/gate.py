"""Job kind ``gate``: the autoseg QA gate of one trace or fused sheet (:mod:`vcd.post.qa_gate`).

Params: ``trace`` (the trace or ``fuse_fill_*`` directory), ``paths`` (the patch collection, where the
trace's seed patch lives), the gate's ``threshold`` (QA suspicion at which a corner is hot),
``dilate`` (corners grown around hot ones), ``min_kept_share`` (a trace keeping less is rejected) and
``tol`` (voxels: a trace pixel this close to its seed patch anchors the kept piece). Writes the trace's
``mask.tif`` (only when something is cut), ``autoseg_qa.json`` and ``meta.json`` ``vcd_autoseg``;
returns the record. The autoseg tick queues one per new trace; gating is idempotent (the mask is
recomputed from the unmasked grid), so a rerun after a crash gives the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import JobSpec, Retry, path_field

KIND = "gate"


@dataclass(kw_only=True)
class Params:
    trace: str = path_field(help="trace or fuse_fill_* directory to gate")
    paths: str = path_field(help="the volpkg's paths/ (the trace's seed patch)")
    threshold: float = 0.5
    dilate: int = 2
    min_kept_share: float = 0.2
    tol: float = 2.0
    fused: bool = False


#: cheap, and what autoseg's planning waits on: before everything else, traces included
SPEC = JobSpec(KIND, Params, priority=8, dedup=lambda p: f"gate:{Path(p.trace).name}",
               retry=Retry(max_attempts=3, backoff_s=5.0))


def run(params: dict, ctx) -> dict:
    """Gate one trace or fused sheet (:func:`vcd.post.qa_gate.gate_trace`,
    :func:`~vcd.post.qa_gate.gate_fused`).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``trace``, ``paths``, ``threshold`` QA suspicion,
        ``dilate`` corners, ``min_kept_share`` 0..1, ``tol`` voxels, ``fused``).
    ctx : JobContext
        Unused (the gate is short).

    Returns
    -------
    dict
        The gate record, as written to the trace's ``autoseg_qa.json`` (``status`` ``accepted`` /
        ``rejected``, ``why``, ``cut_px``, ``kept_px``, …).
    """
    from ..post.qa_gate import gate_fused, gate_trace  # imported here: submitting must stay light
    p = SPEC.parse(params)
    if p.fused:
        return gate_fused(Path(p.trace), p.tol)
    return gate_trace(Path(p.trace), Path(p.paths), p.threshold, p.dilate, p.min_kept_share, p.tol)
