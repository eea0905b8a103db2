"""``vcd trace VOLUME PATHS OUT_DIR PARAMS.json SEED_PATCH`` (``vc_grow_seg_from_segments``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..formats.jsonio import read_json


def _trace(args) -> int:
    from ..jobs import JobContext
    from ..trace.run import run_trace
    params = read_json(args.params, "trace params JSON")
    if not isinstance(params, dict):
        raise InputError(args.params, "params must be a JSON object", "write {\"step\": 10, ...}")
    ctx = JobContext()
    res = run_trace(args.volume, args.paths, args.out_dir, params, args.seed, progress=ctx.progress, warn=ctx.warn)
    print(f"wrote {Path(args.out_dir) / res['written']}: {res['corners']} corners, {res['area_cm2']:.4f} cm², "
          f"{res['patches_used']} patches, {res['qa_suspicious']} suspicious corners (qa.png); stopped: "
          f"{res['stop_reason']}")
    return 0


def _checkpoint(args) -> int:
    from ..trace.run import checkpoint
    name = checkpoint(args.trace, args.paths, args.mask, args.user)
    print(f"wrote {Path(args.paths) / name} (approved superpatch, overlaps linked)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("checkpoint", help="turn a trace (or its unmasked part) into an approved superpatch")
    p.add_argument("trace")
    p.add_argument("paths")
    p.add_argument("--mask", help="extra mask (page 0: 0 = drop) applied to the trace")
    p.add_argument("--user", default="", help="user recorded in the approved tag")
    p.set_defaults(func=_checkpoint)
    p = sub.add_parser("trace", help="trace a large surface by patch consensus (vc_grow_seg_from_segments)")
    p.add_argument("volume", help="volume (.zarr; read for voxelsize)")
    p.add_argument("paths", help="patch directory (paths/)")
    p.add_argument("out_dir", help="output directory (e.g. traces/)")
    p.add_argument("params", help="params JSON (VC3D keys: step, src_step, consensus_default_th, ...)")
    p.add_argument("seed", help="seed patch directory")
    p.set_defaults(func=_trace)
