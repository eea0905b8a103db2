"""Job kind ``trace`` (``vc_grow_seg_from_segments``). Params: TraceParams keys + ``volume``,
``src_dir``, ``tgt_dir``, ``seed`` (seed patch directory)."""

from __future__ import annotations

from ..errors import InputError
from ..trace.run import run_trace

KIND = "trace"


def run(params: dict, ctx) -> dict:
    params = dict(params)
    try:
        volume, src, tgt, seed = (params.pop(k) for k in ("volume", "src_dir", "tgt_dir", "seed"))
    except KeyError as exc:
        raise InputError(None, f"trace job params lack {exc.args[0]!r}", "pass volume, src_dir, tgt_dir and seed")
    return run_trace(volume, src, tgt, params, seed, progress=ctx.progress, warn=ctx.warn)
