"""Shared body of the ``seed`` and ``expand`` job kinds."""

from __future__ import annotations

from ..grow.params import GrowParams
from ..grow.run import run_grow
from ..errors import InputError


def run_grow_job(params: dict, ctx, mode: str) -> dict:
    """params: GrowParams keys plus ``volume``, ``paths`` and optional ``seed_point`` [x, y, z]."""
    params = dict(params)
    try:
        volume, paths = params.pop("volume"), params.pop("paths")
    except KeyError as exc:
        raise InputError(None, f"job params lack {exc.args[0]!r}", "pass volume and paths") from None
    seed_point = params.pop("seed_point", None)
    params["mode"] = mode
    gp = GrowParams.from_dict(params)
    return run_grow(volume, paths, gp, seed_point=seed_point, progress=ctx.progress, warn=ctx.warn,
                    params_raw=params)
