"""Job kind ``fuse`` (``vc_fill_quadmesh``). Params: ``params`` (FillParams keys), ``inputs``
([[trace, winding, weight], ...]), optional ``out_dir``."""

from ..post.fusion import fill_quadmesh

KIND = "fuse"


def run(params: dict, ctx) -> dict:
    return fill_quadmesh(params.get("params", {}), [tuple(i) for i in params["inputs"]], params.get("out_dir"),
                         progress=ctx.progress)
