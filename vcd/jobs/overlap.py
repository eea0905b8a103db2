"""Job kind ``overlap`` (``vc_seg_add_overlap``): link one patch to every patch it overlaps.
Params: ``paths`` (directory), ``segment`` (patch name), optional ``search_effort``."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..grow.linking import link_new_patch, shared_index

KIND = "overlap"


def run(params: dict, ctx) -> dict:
    paths, seg = Path(params["paths"]), str(params["segment"])
    if not (paths / seg / "meta.json").exists():
        raise InputError(paths / seg, "segment has no meta.json (not a complete surface)",
                         "wait until the surface is written, or check the name")
    index = shared_index(paths)  # per-process (a pool worker keeps it between jobs, shared with expand)
    linked = link_new_patch(paths, seg, int(params.get("search_effort", 10)), index=index, warn=ctx.warn)
    return {"segment": seg, "linked": linked}
