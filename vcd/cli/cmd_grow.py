"""``vcd grow`` (``vc_grow_seg_from_seed``) and ``vcd seg-add-overlap`` / ``vcd add-overlap``.

``vcd grow`` takes both of VC3D's command lines: the tutorial's positional form
``VOLUME PATHS PARAMS.json [X Y Z]`` and today's named form ``-v VOLUME -t PATHS -p PARAMS.json
[-s X Y Z]`` (``--volume``, ``--target-dir``, ``--params``, ``--seed``)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..formats.jsonio import read_json
from .args import checked_tool_params, named_or_positional


_USAGE = ("vcd grow -v VOLUME -t PATHS -p PARAMS.json [-s X Y Z] "
          "(or the positional form: vcd grow VOLUME PATHS PARAMS.json [X Y Z])")
_JOB_KEYS = ("volume", "paths", "seed_point")


def _checked_params(path) -> dict:
    """The params file, checked once (unknown keys: one warning each naming the file and the closest
    key) and without its unknown keys (so the job layer does not warn again)."""
    from ..grow.params import GrowParams
    params = read_json(path, "params JSON")
    if not isinstance(params, dict):
        raise InputError(path, "params must be a JSON object", "write {\"mode\": \"seed\", ...}")
    return checked_tool_params(params, GrowParams, path, keep=_JOB_KEYS)


def _grow(args) -> int:
    from ..jobs import JobContext
    named_or_positional(args, [("volume", "-v/--volume"), ("paths", "-t/--target-dir"), ("params", "-p/--params")],
                        _USAGE)
    if args.opt_seed is not None:
        if args.xyz:
            raise InputError(None, "seed given twice (-s and positional X Y Z)", "give only one of them")
        args.xyz = args.opt_seed
    from ..grow.grower import format_stats
    from ..jobs._grow_common import run_grow_job
    params = _checked_params(args.params)
    seed = None
    if args.xyz:
        if len(args.xyz) != 3:
            raise InputError(None, "give the seed as three numbers X Y Z", "e.g. vcd grow vol paths p.json 100 120 64")
        seed = [float(v) for v in args.xyz]
    mode = "expansion" if params.get("mode") == "expansion" and seed is None else "seed"
    job = dict(params, volume=args.volume, paths=args.paths)
    if seed is not None:
        job["seed_point"] = seed
    from .progress import Progress
    res = run_grow_job(job, JobContext(progress_cb=Progress()), mode)
    if res.get("stats"):
        print(format_stats(res["stats"]), file=sys.stderr)
    if res.get("no_surface"):
        raise InputError(args.volume, res["reason"], res["fix"])
    if res.get("written"):
        print(f"wrote {Path(args.paths) / res['written']} ({res['area_cm2']:.4f} cm², {res['corners']} corners)")
        if res.get("mode") == "expansion":  # as VC3D's expansion does, through the daemon's one linker
            from ..jobs import run_job
            linked = run_job("overlap", {"paths": str(args.paths), "segment": res["written"]}, JobContext())["linked"]
            print(f"{res['written']}: {len(linked)} overlaps")
        return 0
    print(f"nothing written: {res['reason']}" + (f" — fix: {res['fix']}" if res.get("fix") else ""),
          file=sys.stderr)
    return 0


def _add_overlap(args) -> int:
    from ..grow.linking import link_new_patch
    if args.repair:
        from ..formats.overlaps import repair_links
        names = [Path(args.segment).name] if args.segment else None
        fixed = repair_links(args.tgt_dir, names)
        for a, b in fixed:
            print(f"repaired {a} -> {b}: {b} now lists {a}")
        print(f"{len(fixed)} one-sided links repaired in {args.tgt_dir}")
        return 0
    if not args.segment:
        raise InputError(None, "no SEGMENT_DIR given", "vcd seg-add-overlap PATHS PATHS/auto_grown_..., "
                         "or vcd seg-add-overlap --repair PATHS")
    seg = Path(args.segment)
    linked = link_new_patch(args.tgt_dir, seg.name, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    print(f"{seg.name}: {len(linked)} overlaps" + (f" ({', '.join(linked)})" if linked else ""))
    return 0


def register(sub) -> None:
    """Add the ``vcd grow``, ``vcd seg-add-overlap`` subcommands to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("grow", help="grow a patch (vc_grow_seg_from_seed): -v VOLUME -t PATHS -p PARAMS.json "
                       "[-s X Y Z], or VOLUME PATHS PARAMS.json [X Y Z]")
    p.add_argument("volume", nargs="?", help="surface-prediction volume (.zarr, local or http(s)://)")
    p.add_argument("paths", nargs="?", help="output directory (the volpkg's paths/)")
    p.add_argument("params", nargs="?", help="params JSON (VC3D keys: mode, generations, step_size, min_area_cm, ...)")
    p.add_argument("xyz", nargs="*", help="explicit seed X Y Z (level-0 voxels)")
    p.add_argument("-v", "--volume", dest="opt_volume", metavar="VOLUME", help="as VC3D's vc_grow_seg_from_seed -v")
    p.add_argument("-t", "--target-dir", dest="opt_paths", metavar="PATHS", help="output directory (VC3D's -t)")
    p.add_argument("-p", "--params", dest="opt_params", metavar="PARAMS", help="params JSON (VC3D's -p)")
    p.add_argument("-s", "--seed", dest="opt_seed", nargs=3, metavar=("X", "Y", "Z"),
                   help="explicit seed (level-0 voxels; VC3D's -s)")
    p.set_defaults(func=_grow)
    p = sub.add_parser("seg-add-overlap", aliases=["add-overlap"],
                       help="link a segment to overlapping patches (vc_seg_add_overlap); --repair fixes one-sided links")
    p.add_argument("tgt_dir", help="the directory of segments (the volpkg's paths/)")
    p.add_argument("segment", nargs="?", help="the segment to link (with --repair: repair only its links)")
    p.add_argument("--repair", action="store_true",
                   help="rewrite one-sided links (A lists B, B does not list A) so both sides list each other")
    p.set_defaults(func=_add_overlap)
