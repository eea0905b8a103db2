"""The collection's density rule — one definition for the scheduler, ``vcdctl status``, the demo
and the density preview.

A patch is *below target* while it has fewer than ``tgt_overlap_count`` links (entries in its
``overlapping.json``); the collection's *density* is the share of patches at or above target.
The daemon keeps queueing ``expand`` jobs while the density is below ``[schedule] target_density``
(see :mod:`vcd.daemon.scheduler`); expansion starts from the least-linked patches.
"""

from __future__ import annotations

from pathlib import Path

from ..formats.overlaps import link_sets
from ..formats.volpkg import list_patches, list_traces


def below_target(n_links: int, tgt_overlap_count: int) -> bool:
    """A patch with ``n_links`` overlaps still needs expansion around it."""
    return n_links < tgt_overlap_count


def collection_stats(volpkg: Path, tgt_overlap_count: int) -> dict:
    """``patches``, ``traces``, ``overlap_deficit`` (patches below target), ``patch_area_cm2`` and
    ``density`` (share of patches at target; 0 without patches) of ``<volpkg>/paths`` (+ traces)."""
    volpkg = Path(volpkg)
    patches = list_patches(volpkg / "paths")
    links = link_sets(volpkg / "paths")
    deficit = sum(below_target(len(links.get(p.name, ())), tgt_overlap_count) for p, _ in patches)
    traces = list_traces(volpkg)
    return {"patches": len(patches), "traces": len(traces), "overlap_deficit": deficit,
            "patch_area_cm2": sum(float(m.get("area_cm2") or 0) for _, m in patches),
            "density": 1.0 - deficit / len(patches) if patches else 0.0}
