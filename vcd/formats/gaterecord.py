"""The autoseg QA gate's record beside a trace (``autoseg_qa.json``) and the metas it reads.

Written by the ``gate`` job (:mod:`vcd.post.qa_gate`); read by the final-sheet choice
(:mod:`vcd.post.final_sheets`), the autoseg report and the status page.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VcdError
from .jsonio import read_json

GATE_FILE = "autoseg_qa.json"


def read_meta(d: Path) -> dict:
    """A surface's ``meta.json`` as a dict ({} when missing or malformed)."""
    try:
        m = read_json(Path(d) / "meta.json", "surface meta.json")
        return m if isinstance(m, dict) else {}
    except VcdError:
        return {}


def fuse_inputs(fused: Path) -> list[str]:
    """Names of a fused sheet's input traces, the reference first (from its ``vcd_inputs``)."""
    return [Path(i.get("trace", "")).name for i in read_meta(fused).get("vcd_inputs", []) if isinstance(i, dict)]


def read_gate(d: Path) -> dict | None:
    """The gate record of a gated trace or fused sheet.

    Parameters
    ----------
    d : pathlib.Path
        The trace or fused-sheet directory.

    Returns
    -------
    dict or None
        The parsed :data:`GATE_FILE` (``status``, ``why``, ``cut_px``, ``kept_px``, …), or None when
        not gated or unreadable.
    """
    if not (Path(d) / GATE_FILE).exists():
        return None
    try:
        return read_json(Path(d) / GATE_FILE, "autoseg QA record")
    except VcdError:
        return None
