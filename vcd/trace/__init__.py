"""Consensus tracer (``vc_grow_seg_from_segments``): large single-sheet traces from a patch collection."""
