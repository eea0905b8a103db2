"""``vcd winding``, ``fill-quadmesh``, ``upscale-grounding``, ``render``, ``to-obj``, ``from-obj``."""

from __future__ import annotations

from ..errors import InputError
from ..formats.jsonio import read_json


def _winding(a) -> int:
    from ..post.winding import write_winding
    r = write_winding(a.trace)
    print(f"{a.trace}: winding.tif, winding_vis.tif, winding.png written; span {r['span_wraps']:.2f} wraps")
    return 0


def _triples(items, n, what):
    if not items or len(items) % n:
        raise InputError(None, f"give {what} in groups of {n}", "see --help")
    return [items[i:i + n] for i in range(0, len(items), n)]


def _fill(a) -> int:
    from ..post.fusion import fill_quadmesh
    params = read_json(a.params, "fill params JSON")
    ins = [(t, w, float(wt)) for t, w, wt in _triples(a.inputs, 3, "TRACE WINDING WEIGHT")]
    r = fill_quadmesh(params, ins, a.out_dir)
    print(f"wrote {r['written']}: {r['filled']} hole cells filled, {r['snapped']} onto other traces")
    return 0


def _ground(a) -> int:
    from ..post.fusion import upscale_grounding
    srcs = [(t, w) for t, w in _triples(a.sources, 2, "TRACE WINDING")]
    r = upscale_grounding(a.infill, a.infill_winding, int(a.factor), srcs, a.out_dir)
    print(f"wrote {r['written']} ({r['grounded_fraction'] * 100:.0f}% on source traces)")
    return 0


def _render(a) -> int:
    from ..post.render import render

    from .progress import Progress
    progress = Progress()
    r = render(a.volume, a.out_pattern, a.segment, a.scale, a.group, a.layers, processes=a.processes,
               progress=progress)
    progress.close()
    print(f"wrote {len(r['layers'])} layers {r['shape'][1]}×{r['shape'][0]} px; preview {r['preview']}")
    return 0


def _to_obj(a) -> int:
    from ..post.obj import to_obj
    r = to_obj(a.segment, a.out)
    print(f"wrote {a.out}: {r['vertices']} vertices, {r['faces']} faces")
    return 0


def _from_obj(a) -> int:
    from ..post.obj import from_obj
    r = from_obj(a.obj, a.out_dir)
    print(f"wrote {a.out_dir}: grid {r['rows']}×{r['cols']}")
    return 0


def register(sub) -> None:
    """Add the ``vcd winding``, ``vcd fill-quadmesh``, ``vcd upscale-grounding``, ``vcd render``, ``vcd
    to-obj``, ``vcd from-obj`` subcommands to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("winding", help="relative winding numbers of a trace (vc_tifxyz_winding)")
    p.add_argument("trace")
    p.set_defaults(func=_winding)
    p = sub.add_parser("fill-quadmesh", help="fuse traces and fill holes (vc_fill_quadmesh)")
    p.add_argument("params")
    p.add_argument("inputs", nargs="+", help="TRACE WINDING WEIGHT [TRACE WINDING WEIGHT ...]")
    p.add_argument("--out-dir", default=None, help="default: the first trace's directory")
    p.set_defaults(func=_fill)
    p = sub.add_parser("upscale-grounding", help="upsample a fused surface onto source traces")
    p.add_argument("infill")
    p.add_argument("infill_winding")
    p.add_argument("factor", type=int)
    p.add_argument("sources", nargs="+", help="TRACE WINDING [TRACE WINDING ...]")
    p.add_argument("--out-dir", default=None)
    p.set_defaults(func=_ground)
    p = sub.add_parser("render", help="render layers along the surface (vc_render_tifxyz)")
    p.add_argument("volume")
    p.add_argument("out_pattern", help="printf pattern (out/%%02d.tif) or a directory")
    p.add_argument("segment")
    p.add_argument("scale", type=float, help="pixels per level-GROUP voxel")
    p.add_argument("group", type=int, help="volume level")
    p.add_argument("layers", type=int, help="number of layers centred on the surface")
    p.add_argument("--processes", type=int, default=None)
    p.set_defaults(func=_render)
    p = sub.add_parser("to-obj", help="export a surface as OBJ with UVs and normals (vc_tifxyz2obj)")
    p.add_argument("segment")
    p.add_argument("out")
    p.set_defaults(func=_to_obj)
    p = sub.add_parser("from-obj", help="rebuild a tifxyz surface from an OBJ written by to-obj")
    p.add_argument("obj")
    p.add_argument("out_dir")
    p.set_defaults(func=_from_obj)
