"""Job kind ``expand``: grow one patch from an under-covered point of an existing patch and link it.
Params: GrowParams keys + ``volume``, ``paths``."""

from ._grow_common import run_grow_job

KIND = "expand"


def run(params: dict, ctx) -> dict:
    return run_grow_job(params, ctx, "expansion")
