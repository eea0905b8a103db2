"""Job kind ``retrace``: re-run a trace with the params, seed, volume and patch directory recorded in
its provenance, so annotations made since (masks, approved/defective) take effect. Writes a new
``auto_trace_<ts>`` beside the old one with ``retrace_of`` = the old name (the old trace is kept).
Params: ``trace`` (trace directory)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..formats.jsonio import read_json
from ..trace.run import PROVENANCE, run_trace

KIND = "retrace"


def run(params: dict, ctx) -> dict:
    trace = Path(params["trace"])
    prov_path = trace / PROVENANCE
    if not prov_path.exists():
        raise InputError(trace, f"trace has no {PROVENANCE}", "only traces made by vcd can be retraced")
    prov = read_json(prov_path, "trace provenance")
    missing = [k for k in ("src_dir", "seed", "volume") if not prov.get(k)]
    if missing:
        raise InputError(prov_path, f"provenance lacks {', '.join(missing)}",
                         "retrace it by hand with vcd trace, or trace it again with vcd (which records them)")
    src = Path(prov["src_dir"])
    seed = src / prov["seed"]
    res = run_trace(prov["volume"], src, trace.parent, dict(prov.get("params") or {}), seed,
                    progress=ctx.progress, warn=ctx.warn, retrace_of=trace.name)
    res["retrace_of"] = trace.name
    return res
