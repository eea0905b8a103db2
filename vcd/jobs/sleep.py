"""Job kind ``sleep``: a diagnostic job for checking a deployment (workers, leases, cancellation,
metrics) without touching data. Params: ``seconds`` (default 1), optional ``marker`` file to which
one JSON line ``{"job", "start", "end"}`` is appended per completed run."""

from __future__ import annotations

import json
import os
import time

KIND = "sleep"


def run(params: dict, ctx) -> dict:
    seconds = float(params.get("seconds", 1.0))
    start = time.time()
    while time.time() - start < seconds:
        ctx.check_cancel()
        ctx.progress((time.time() - start) / seconds, "sleeping")
        time.sleep(min(0.05, seconds))
    end = time.time()
    if params.get("marker"):
        with open(params["marker"], "a") as fh:
            fh.write(json.dumps({"job": ctx.job_id, "start": start, "end": end, "pid": os.getpid()}) + "\n")
    return {"slept": end - start}
