"""``vcd patches-at PATHS X Y Z [X Y Z ...] [--radius R] [--mask-around R2]``."""

from __future__ import annotations

from ..errors import InputError


def _patches_at(a) -> int:
    from ..grow.poi import mask_around, patches_at
    if len(a.xyz) % 3 or not a.xyz:
        raise InputError(None, "give points as X Y Z triples", "e.g. vcd patches-at paths 3200 2400 5260")
    pts = [[float(v) for v in a.xyz[i:i + 3]] for i in range(0, len(a.xyz), 3)]
    found = patches_at(a.paths, pts, a.radius)
    for name in found:
        line = name
        if a.mask_around:
            n = sum(mask_around(f"{a.paths}/{name}", p, a.mask_around) for p in pts)
            line += f"  (masked {n} grid points)"
        print(line)
    return 0


def register(sub) -> None:
    """Add the ``vcd patches-at`` subcommand to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("patches-at", help="patches passing within R voxels of every point (filter by POIs)")
    p.add_argument("paths")
    p.add_argument("xyz", nargs="+", help="X Y Z [X Y Z ...] in level-0 voxels")
    p.add_argument("--radius", type=float, default=2.0)
    p.add_argument("--mask-around", type=float, default=0.0, metavar="R2",
                   help="also mask each found patch within R2 voxels of the points (triggers retrace)")
    p.set_defaults(func=_patches_at)
