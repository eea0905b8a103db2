"""Job kind ``winding`` (``vc_tifxyz_winding``): ``winding.tif`` etc. beside the trace. Params: ``trace``."""

from ..post.winding import write_winding

KIND = "winding"


def run(params: dict, ctx) -> dict:
    return write_winding(params["trace"])
