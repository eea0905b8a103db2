"""``vcd preview slice|trace|density|refresh`` — PNG previews (see :mod:`vcd.post.preview`)."""

from __future__ import annotations

from pathlib import Path


def _target(args) -> int:
    """The links per patch the previews colour against: ``--tgt``, else the daemon's own
    (:func:`vcd.daemon.config.tgt_overlap_count` of ``--config`` / ``$VCD_CONFIG`` / ``vcd.toml``,
    its ``[params_files]`` and ``[params.expand]``)."""
    if getattr(args, "tgt", None) is not None:
        return args.tgt
    from ..daemon.config import load_config, tgt_overlap_count
    return tgt_overlap_count(load_config(args.volpkg, getattr(args, "config", None)), Path(args.volpkg))


def _slice(args) -> int:
    from ..post.preview import preview_slice
    out = args.out or f"slice_{args.axis}{'' if args.index is None else args.index}.png"
    lay = preview_slice(args.volpkg, out, axis=args.axis, index=args.index, volume=args.volume,
                        color_by=args.color_by, scale=args.scale, tgt=_target(args))
    print(f"wrote {out}: {lay['volume']} {args.axis}={lay['index']}, {len(lay['patches'])} patches, "
          f"{len(lay['traces'])} traces")
    return 0


def _trace(args) -> int:
    from ..post.preview import preview_trace
    out = args.out or f"{Path(args.trace).name}{'_qa' if args.qa else ''}.png"
    lay = preview_trace(args.trace, out, qa=args.qa, volume=args.volume)
    c = lay["status_counts"]
    print(f"wrote {out}: {lay['source']}; supporting patches: " +
          ", ".join(f"{n} {k}" for k, n in c.items() if n) if lay["patch_status"] else f"wrote {out}: {lay['source']}")
    return 0


def _density(args) -> int:
    from ..post.preview import preview_density
    out = args.out or "density.png"
    st = preview_density(args.volpkg, out, bin_size=args.bin, tgt=_target(args))["stats"]
    print(f"wrote {out}: {st['patches']} patches, {st['patches_below_target']} ({100 * st['below_target_fraction']:.1f}%)"
          f" below target (fewer than {st['tgt_overlap_count']} links, as the scheduler counts), "
          f"{100 * st['uncovered_fraction']:.1f}% of sheet bins uncovered")
    return 0


def _refresh(args) -> int:
    from ..post.preview import refresh_previews
    for p in refresh_previews(args.volpkg, tgt=_target(args)):
        print(p)
    return 0


def _config_option(parser) -> None:
    parser.add_argument("--config", default=None, help="the daemon's TOML config, if not VOLPKG/vcd.toml "
                        "(default: $VCD_CONFIG); its tgt_overlap_count is the target links per patch")


def register(sub) -> None:
    """Add the ``vcd preview`` subcommand (``slice``, ``trace``, ``density``, ``refresh``) to ``sub``
    (the ``vcd`` subparsers)."""
    p = sub.add_parser("preview", help="PNG previews: patches on a slice, a flattened trace, collection density")
    ps = p.add_subparsers(dest="preview_kind", metavar="KIND")
    s = ps.add_parser("slice", help="a volume slice with all patch and trace intersections drawn")
    s.add_argument("volpkg")
    s.add_argument("--axis", choices=["z", "y", "x"], default="z")
    s.add_argument("--index", type=int, default=None, help="level-0 voxel index along the axis (default: middle)")
    s.add_argument("--volume", default=None, help="volume directory name in volumes/ (default: CT, else prediction)")
    s.add_argument("--color-by", choices=["patch", "overlaps"], default="patch")
    s.add_argument("--scale", type=int, default=None, help="integer enlargement (default: auto)")
    s.add_argument("--out", default=None, help="output PNG")
    _config_option(s)
    s.set_defaults(func=_slice)
    t = ps.add_parser("trace", help="a flattened trace (centre layer or sampled CT, or --qa) with patch status")
    t.add_argument("trace")
    t.add_argument("--qa", action="store_true", help="show the QA map (qa.tif) instead")
    t.add_argument("--volume", default=None, help="volume (.zarr) to sample when there is no layers/")
    t.add_argument("--out", default=None)
    t.set_defaults(func=_trace)
    d = ps.add_parser("density", help="how many patches cover each region; where expansion still has work")
    d.add_argument("volpkg")
    d.add_argument("--bin", type=int, default=None, help="bin size in voxels (power of two; default: auto)")
    d.add_argument("--tgt", type=int, default=None, help="target links per patch (default: the daemon's "
                   "tgt_overlap_count, from its config and expand params file, else 20)")
    _config_option(d)
    d.add_argument("--out", default=None)
    d.set_defaults(func=_density)
    r = ps.add_parser("refresh", help="rewrite <volpkg>/.vcd/previews/ (what the daemon does)")
    r.add_argument("volpkg")
    _config_option(r)
    r.set_defaults(func=_refresh)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
