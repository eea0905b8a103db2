"""Patch growth (``vc_grow_seg_from_seed``): distance field, quad-grid grower, seeding, linking.

Library API (:mod:`vcd.grow.api`): ``grow_patch(volume, params, seed=None) -> Surface``,
``expand_once(volpkg, params) -> Path | None``, ``link_overlaps(paths_dir, segment) -> set[str]``.
"""
