#!/usr/bin/env python
"""Score tifxyz surfaces against a synthetic scroll's ground truth.

Usage: ``python tools/score.py SCROLL.volpkg SURFACE_DIR [SURFACE_DIR ...]`` (same as ``vcd score``).
Prints mean/p95 distance to the true sheet (voxels), sheet jumps, the largest jump-free fraction and
wraps covered, one line per surface, then the collection's coverage (fraction of the true sheet
within 2 voxels of some surface).
"""

import sys

from vcd.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
