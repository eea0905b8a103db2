"""Job kind ``seed``: grow one patch from a random (or given ``seed_point``) start. Params: GrowParams
keys + ``volume``, ``paths``, optional ``seed_point`` [x, y, z] voxels."""

from ._grow_common import run_grow_job

KIND = "seed"


def run(params: dict, ctx) -> dict:
    return run_grow_job(params, ctx, "seed")
