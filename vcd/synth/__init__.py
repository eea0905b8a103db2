"""Synthetic scrolls with known ground truth: generator, truth queries and surface scoring."""

from .generate import PRESET_NAMES, PRESETS, build_truth, grow_params_for, make_scroll, realistic_family
from .realistic import RealisticTruth
from .truth import SheetTruth, load_truth

__all__ = ["PRESETS", "PRESET_NAMES", "RealisticTruth", "SheetTruth", "build_truth", "grow_params_for", "load_truth",
           "make_scroll", "realistic_family"]
