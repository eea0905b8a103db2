"""``vcd synth``, ``vcd info``, ``vcd convert``, ``vcd score``."""

from __future__ import annotations

import json


def _parse_params(items) -> dict:
    """``key=value`` strings → overrides; values are JSON (numbers, true/false, [lists], null) or strings."""
    from ..errors import InputError
    out = {}
    for it in items or []:
        key, sep, val = it.partition("=")
        if not sep or not key:
            raise InputError("--param", f"{it!r} is not key=value", "write e.g. --param dropout=0.3")
        try:
            out[key.strip()] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip()] = val
    return out


def _synth(args) -> int:
    from ..errors import InputError
    from ..synth import load_truth, make_scroll
    from ..synth.generate import write_grow_params
    over = _parse_params(args.param)
    if args.half_thickness is not None:
        over["half_thickness"] = args.half_thickness
    try:
        out = make_scroll(args.out, shape=tuple(args.shape), preset=args.preset, seed=args.seed,
                          voxelsize=args.voxelsize, ct=not args.no_ct, **over)
    except ValueError as exc:
        raise InputError("--param", str(exc), "see `vcd synth --help` and vcd/synth/generate.py") from None
    t = load_truth(out)
    written = [] if args.no_params else write_grow_params(out, t)
    print(f"wrote {out}: {args.preset} scroll {tuple(args.shape)} (z, y, x), {t.n_wraps:.1f} wraps, "
          f"{len(t.holes)} holes, {len(t.bridges)} bridges, {len(t.bumps)} touches")
    if args.preset == "realistic":
        k = t.params
        print(f"  thickness {k['thickness_range'][0]:.1f}-{k['thickness_range'][1]:.1f} vx, "
              f"{'soft' if k['soft'] else 'binary'}, dropout {k['dropout']:.0%}, tilt {k['tilt_deg']:.1f} deg, "
              f"twist {k['twist_deg']:.0f} deg, pitch {k['pitch']:.1f} vx, {len(t.fused)} fused zones, "
              f"{len(t.fragments)} fragments")
    if written:
        print(f"  grow params for this scroll: {', '.join(p.name for p in written)}")
    return 0


def _info(args) -> int:
    from ..formats.info import describe
    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for kk, vv in v.items():
                    print(f"  {kk}: {vv if not isinstance(vv, dict) else json.dumps(vv)}")
            else:
                print(f"{k}: {v}")
    return 0


def _convert(args) -> int:
    from ..formats.convert import convert_volume

    from .progress import Progress
    progress = Progress()
    convert_volume(args.src, args.dst, n_bytes=args.bytes, algorithm=args.algorithm, n_levels=args.levels,
                   voxelsize=args.voxelsize, progress=progress)
    progress.close()
    print(f"wrote {args.dst}")
    return 0


def register(sub) -> None:
    """Add the ``vcd synth``, ``vcd info``, ``vcd convert``, ``vcd score`` subcommands to ``sub`` (the
    ``vcd`` subparsers)."""
    p = sub.add_parser("synth", help="make a synthetic scroll volpkg with ground truth")
    p.add_argument("out", help="output .volpkg directory")
    p.add_argument("--shape", nargs=3, type=int, default=[384, 384, 384], metavar=("Z", "Y", "X"))
    p.add_argument("--preset", choices=["easy", "medium", "hard", "realistic"], default="medium",
                   help="realistic: every knob drawn from --seed (thickness, dropout, tilt, fused zones, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voxelsize", type=float, default=7.91, help="µm per voxel")
    p.add_argument("--no-ct", action="store_true", help="skip the CT-like volume")
    p.add_argument("--half-thickness", type=float, default=None,
                   help="fixed half thickness of the predicted sheets in voxels (1.5 = 3-voxel sheets)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="override one preset knob, e.g. dropout=0.3, soft=true, clean=true, "
                        "thickness_range=[2,4] (repeatable; see vcd/synth/realistic.py)")
    p.add_argument("--no-params", action="store_true", help="do not write seed.json / expand.json")
    p.set_defaults(func=_synth)

    p = sub.add_parser("info", help="summarise a volume, surface or volpkg (exit 1 if malformed)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)

    p = sub.add_parser("convert", help="uint16/uint8 zarr -> VC3D-ready uint8 OME-Zarr with pyramid")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--bytes", type=int, default=1)
    p.add_argument("--algorithm", choices=["mean", "max", "nearest"], default="mean",
                   help="downsampling (use max or nearest for predictions)")
    p.add_argument("--levels", type=int, default=6)
    p.add_argument("--voxelsize", type=float, default=None, help="µm per voxel if the input has no meta.json")
    p.set_defaults(func=_convert)

    _register_score(sub)


def _score(args) -> int:
    from ..formats.tifxyz import read_surface
    from ..synth import load_truth
    from ..synth.score import coverage, score_surface
    truth = load_truth(args.volpkg)
    grids = []
    for d in args.surfaces:
        s = read_surface(d)
        grids.append(s.points)
        r = score_surface(s.points, truth)
        print(f"{d}: valid={r['n_valid']} mean={r['mean_dist']:.3f} p95={r['p95_dist']:.3f} vx "
              f"jumps={r['jumps']} jump_free={r['jump_free_fraction']:.3f} wraps={r['wraps_covered']:.2f}")
    if grids:
        print(f"coverage (true sheet within {args.tol} vx): {coverage(grids, truth, tol=args.tol):.3f}")
    return 0


def _register_score(sub) -> None:
    p = sub.add_parser("score", help="score surfaces against a synthetic scroll's ground truth")
    p.add_argument("volpkg", help="synthetic volpkg (has synth_truth.json)")
    p.add_argument("surfaces", nargs="+", help="tifxyz directories")
    p.add_argument("--tol", type=float, default=2.0, help="coverage tolerance in voxels")
    p.set_defaults(func=_score)
