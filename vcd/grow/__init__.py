"""Patch growth (``vc_grow_seg_from_seed``): distance field, quad-grid grower, seeding, linking.

What the jobs, the CLI and notebooks call: :func:`vcd.grow.run.run_grow` (one patch written to a
``paths/`` directory; the ``seed``/``expand`` jobs and ``vcd grow``), :func:`vcd.grow.run.grow_surface`
(one patch in memory) and :func:`vcd.grow.linking.link_new_patch` (``vc_seg_add_overlap``; the
``overlap`` job, the one linker).
"""
