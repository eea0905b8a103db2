"""Synthetic scrolls with known ground truth: generator, truth queries and surface scoring."""

from __future__ import annotations

import os
from pathlib import Path

from ..formats.jsonio import read_json
from .generate import PRESET_NAMES, PRESETS, build_truth, grow_params_for, make_scroll, realistic_family
from .realistic import RealisticTruth
from .truth import TRUTH_FILE, SheetTruth

__all__ = ["PRESETS", "PRESET_NAMES", "RealisticTruth", "SheetTruth", "build_truth", "grow_params_for", "load_truth",
           "make_scroll", "realistic_family"]

# the truth classes by the ``model`` field of ``synth_truth.json`` (absent: the analytic sheet model);
# here, above both modules, so that the base class never imports its subclass
TRUTH_MODELS: dict[str | None, type[SheetTruth]] = {None: SheetTruth, "realistic": RealisticTruth}


def load_truth(volpkg: str | os.PathLike) -> SheetTruth:
    """Read ``synth_truth.json`` from a synthetic volpkg (or the file itself).

    Parameters
    ----------
    volpkg : path
        The synthetic volpkg directory, or its ``synth_truth.json``.

    Returns
    -------
    SheetTruth
        A :class:`SheetTruth`, or a :class:`RealisticTruth` when the file's ``model`` is ``"realistic"``.
    """
    p = Path(volpkg)
    if p.is_dir():
        p = p / TRUTH_FILE
    d = read_json(p, "synthetic ground truth")
    d.pop("format", None)
    d.pop("version", None)
    for k in ("shape", "center", "drift"):
        d[k] = tuple(d[k])
    return TRUTH_MODELS.get(d.get("model"), SheetTruth)(**d)
