"""Synthetic scrolls with known ground truth: generator, truth queries and surface scoring."""

from .generate import PRESETS, build_truth, make_scroll
from .truth import SheetTruth, load_truth

__all__ = ["PRESETS", "SheetTruth", "build_truth", "load_truth", "make_scroll"]
