"""Job kind ``overlap`` (``vc_seg_add_overlap``): link one patch to every patch it overlaps.
Params: ``paths`` (directory), ``segment`` (patch name), optional ``search_effort``.

The one linker of the daemon: a patch grown by expansion is written unlinked, with the patch it grew
from in ``meta.json`` (``vcd_source_patch``); this job links it to that patch regardless of the
search (as VC3D's expansion does), beside every patch the search finds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError, InputError
from ..formats.jsonio import read_json
from ..formats.volpkg import resolves_outside
from .spec import JobSpec, Retry, param, path_field

KIND = "overlap"


@dataclass(kw_only=True)
class Params:
    paths: str = path_field(help="patch directory (the volpkg's paths/)")
    segment: str = path_field(help="name of the patch in paths/ to link")
    search_effort: int = param(10, help="accepted for VC3D compatibility")


#: linking is cheap and every trace needs it: before growth and retraces; one queued job per patch
SPEC = JobSpec(KIND, Params, priority=5, dedup=lambda p: f"overlap:{Path(p.segment).name}",
               retry=Retry(max_attempts=3, backoff_s=5.0),
               wall_seconds=3600.0)


def run(params: dict, ctx) -> dict:
    """Link a new patch to every patch it overlaps (:func:`vcd.grow.linking.link_new_patch`), both ways.

    Parameters
    ----------
    params : dict
        The job's JSON params: :class:`Params` (``paths``, ``segment``: the new patch's name).
    ctx : JobContext
        Progress (``ctx.progress(fraction, message)``), cancellation and the job's log.

    Returns
    -------
    dict
        ``segment`` and ``linked`` (names of the patches now linked to it).
    """
    from ..grow.linking import link_new_patch, shared_index  # imported here: submitting must stay light
    p = SPEC.parse(params)
    paths, seg = Path(p.paths), p.segment
    if resolves_outside(paths / seg):  # a patch shared by symlink: never read or written (issue 31)
        raise InputError(paths / seg, "patch resolves (through a symlink) outside the volpkg; it is not linked",
                         "copy the patch into paths/ instead of linking to it")
    if not (paths / seg / "meta.json").exists():
        raise InputError(paths / seg, "segment has no meta.json (not a complete surface)",
                         "wait until the surface is written, or check the name")
    index = shared_index(paths)  # per-process (a pool worker keeps it between jobs, shared with expand)
    linked = link_new_patch(paths, seg, p.search_effort, index=index, also=source_patches(paths, seg),
                            warn=ctx.warn)
    return {"segment": seg, "linked": linked}


def source_patches(paths: Path, segment: str) -> list[str]:
    """``[name]`` of the patch ``segment`` was expanded from (its meta's ``vcd_source_patch``), when
    that patch is still in ``paths``; else ``[]``."""
    try:
        meta = read_json(paths / segment / "meta.json")
    except FormatError:
        return []
    src = meta.get("vcd_source_patch") if isinstance(meta, dict) else None
    if not isinstance(src, str) or src == segment or Path(src).name != src:
        return []
    return [src] if (paths / src / "meta.json").exists() else []
