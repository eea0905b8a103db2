"""Patch growth (``vc_grow_seg_from_seed``): distance field, quad-grid grower, seeding, linking."""
