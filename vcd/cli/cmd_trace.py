"""``vcd trace`` (``vc_grow_seg_from_segments``) and ``vcd checkpoint``.

``vcd trace`` takes the tutorial's positional form ``VOLUME PATHS OUT_DIR PARAMS.json SEED_PATCH`` and
the named form ``-v VOLUME -s PATHS -t OUT_DIR -p PARAMS.json --src-segment SEED_PATCH``;
``--resume TRACE`` traces again with what ``TRACE`` recorded (volume, patch directory, params, seed)
unless given, writing a new ``auto_trace_*`` with ``retrace_of`` = ``TRACE`` (the old one is kept)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..formats.jsonio import read_json
from ..formats.provenance import recorded_run
from .args import checked_tool_params, named_or_positional


_FLAGS = [("volume", "-v/--volume"), ("paths", "-s/--src-dir"), ("out_dir", "-t/--target-dir"),
          ("params", "-p/--params"), ("seed", "--src-segment")]
_USAGE = ("vcd trace -v VOLUME -s PATHS -t OUT_DIR -p PARAMS.json --src-segment SEED [--resume TRACE] "
          "(or: vcd trace VOLUME PATHS OUT_DIR PARAMS.json SEED)")


def _resolve(args) -> dict | None:
    """Named options over positionals; with ``--resume`` the trace's recorded provenance fills the rest.

    Returns the resumed trace's recorded params (or None)."""
    recorded, rec = {}, None
    if args.resume:
        rec = recorded_run(args.resume, "--resume: only traces made by vcd can be resumed; give all arguments "
                                        "to trace anew")
        recorded = {"volume": rec["volume"], "paths": rec["src_dir"], "out_dir": rec["tgt_dir"], "seed": rec["seed"]}
    named_or_positional(args, _FLAGS, _USAGE, recorded, optional=("params",) if args.resume else ())
    return rec["params"] if rec else None


def _checked_params(params: dict, source) -> dict:
    """``params`` checked once (types; unknown keys: one warning each naming the file and the closest
    key), without its unknown keys (so the tracer does not warn again)."""
    from ..trace.params import TraceParams
    return checked_tool_params(params, TraceParams, source)


def _trace(args) -> int:
    from ..jobs import JobContext
    from ..trace.run import run_trace
    recorded_params = _resolve(args)
    if args.params is not None:
        params = read_json(args.params, "trace params JSON")
    else:
        params = dict(recorded_params or {})
    if not isinstance(params, dict):
        raise InputError(args.params, "params must be a JSON object", "write {\"step\": 10, ...}")
    params = _checked_params(params, args.params or args.resume)
    from .progress import Progress
    ctx = JobContext(progress_cb=Progress())
    res = run_trace(args.volume, args.paths, args.out_dir, params, args.seed, progress=ctx.progress, warn=ctx.warn,
                    retrace_of=Path(args.resume).name if args.resume else None)
    print(f"wrote {Path(args.out_dir) / res['written']}: {res['corners']} corners, {res['area_cm2']:.4f} cm², "
          f"{res['patches_used']} patches, {res['qa_suspicious']} suspicious corners (qa.png); stopped: "
          f"{res['stop_reason']}")
    return 0


def _checkpoint(args) -> int:
    from ..jobs import JobContext, run_job
    from ..trace.run import checkpoint
    name = checkpoint(args.trace, args.paths, args.mask, args.user)
    linked = run_job("overlap", {"paths": str(args.paths), "segment": name}, JobContext())["linked"]  # the one linker
    print(f"wrote {Path(args.paths) / name} (approved superpatch, linked to {len(linked)} patches)")
    return 0


def register(sub) -> None:
    """Add the ``vcd checkpoint``, ``vcd trace`` subcommands to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("checkpoint", help="turn a trace (or its unmasked part) into an approved superpatch")
    p.add_argument("trace")
    p.add_argument("paths")
    p.add_argument("--mask", help="extra mask (page 0: 0 = drop) applied to the trace")
    p.add_argument("--user", default="", help="user recorded in the approved tag")
    p.set_defaults(func=_checkpoint)
    p = sub.add_parser("trace", help="trace a large surface by patch consensus (vc_grow_seg_from_segments): "
                       + _USAGE)
    p.add_argument("volume", nargs="?", help="volume (.zarr; read for voxelsize)")
    p.add_argument("paths", nargs="?", help="patch directory (paths/)")
    p.add_argument("out_dir", nargs="?", help="output directory (e.g. traces/)")
    p.add_argument("params", nargs="?", help="params JSON (VC3D keys: step, src_step, consensus_default_th, ...)")
    p.add_argument("seed", nargs="?", help="seed patch directory")
    p.add_argument("-v", "--volume", dest="opt_volume", metavar="VOLUME", help="volume (VC3D's -v)")
    p.add_argument("-s", "--src-dir", dest="opt_paths", metavar="PATHS", help="patch directory (VC3D's -s)")
    p.add_argument("-t", "--target-dir", dest="opt_out_dir", metavar="OUT_DIR", help="output directory (VC3D's -t)")
    p.add_argument("-p", "--params", dest="opt_params", metavar="PARAMS", help="params JSON (VC3D's -p)")
    p.add_argument("--src-segment", dest="opt_seed", metavar="SEED", help="seed patch directory (VC3D's --src-segment)")
    p.add_argument("--resume", metavar="TRACE",
                   help="trace again from what TRACE recorded (volume, paths, params, seed) unless given; "
                        "the new trace records retrace_of")
    p.set_defaults(func=_trace)
