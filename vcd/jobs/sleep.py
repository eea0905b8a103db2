"""Job kind ``sleep``: a diagnostic job for checking a deployment (workers, leases, cancellation,
metrics) without touching data. Params: ``seconds`` (default 1), optional ``marker`` file to which
one JSON line ``{"job", "start", "end"}`` is appended per completed run."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from .spec import JobSpec, Retry, param, path_field

KIND = "sleep"


@dataclass(kw_only=True)
class Params:
    seconds: float = param(1.0, help="how long to sleep (s)")
    marker: str | None = path_field(None, help="file to append one JSON line per completed run to")


SPEC = JobSpec(KIND, Params, priority=0, retry=Retry(max_attempts=3, backoff_s=5.0),
               wall_seconds=3600.0)


def run(params: dict, ctx) -> dict:
    """Sleep ``seconds`` (a test and demo job: cancellable, reports progress).

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``seconds``, optional ``marker`` file).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        ``slept``: seconds slept.
    """
    p = SPEC.parse(params)
    start = time.time()
    while time.time() - start < p.seconds:
        ctx.check_cancel()
        ctx.progress((time.time() - start) / p.seconds, "sleeping")
        time.sleep(min(0.05, p.seconds))
    end = time.time()
    if p.marker:
        with open(p.marker, "a") as fh:
            fh.write(json.dumps({"job": ctx.job_id, "start": start, "end": end, "pid": os.getpid()}) + "\n")
    return {"slept": end - start}
