"""``vcd preview slice|trace|density ...``: PNG pictures of the collection (see vcd.post.preview)."""

from __future__ import annotations


def _slice(a) -> int:
    from ..post.preview import slice_preview
    print(slice_preview(a.volpkg, a.axis, a.index, a.volume, a.color_by, a.out))
    return 0


def _trace(a) -> int:
    from ..post.preview import trace_preview
    print(trace_preview(a.trace, a.out, a.qa, a.volume))
    return 0


def _density(a) -> int:
    from ..post.preview import density_preview
    out, frac = density_preview(a.volpkg, a.out, a.tgt)
    print(f"{out}  ({frac * 100:.0f}% of covered bins below {a.tgt} patches)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("preview", help="PNG previews: a slice with patch intersections, a trace, density")
    s = p.add_subparsers(dest="what", metavar="WHAT")
    q = s.add_parser("slice")
    q.add_argument("volpkg")
    q.add_argument("--axis", choices=["z", "y", "x"], default="z")
    q.add_argument("--index", type=int)
    q.add_argument("--volume")
    q.add_argument("--color-by", choices=["patch", "overlaps"], default="patch")
    q.add_argument("--out")
    q.set_defaults(func=_slice)
    q = s.add_parser("trace")
    q.add_argument("trace")
    q.add_argument("--qa", action="store_true")
    q.add_argument("--volume")
    q.add_argument("--out")
    q.set_defaults(func=_trace)
    q = s.add_parser("density")
    q.add_argument("volpkg")
    q.add_argument("--tgt", type=int, default=20)
    q.add_argument("--out")
    q.set_defaults(func=_density)
