"""PNG previews a person can look at: patches on a slice, a flattened trace, collection density.

- :func:`render_slice` — a volume slice (axis z, y or x; the CT volume if present, else the
  prediction) with the intersections of every patch in ``paths/`` and every trace (``auto_trace_*``
  in ``paths/`` and ``traces/``) drawn on it, coloured by patch (a stable colour per name) or by
  overlap count (blue = 0 … red = ``tgt_overlap_count``).
- :func:`render_trace` — a trace flattened: its rendered centre layer (``layers/NN.tif``), else the
  CT sampled along the surface, or its QA map (``qa.tif``, green = fine … red = suspicious), with a
  legend strip of its supporting patches' annotation status (approved / defective / masked / plain).
- :func:`render_density` — how many patches cover each bin of the volume (max projections along z,
  y, x) and, per ray, the share of covered bins holding a patch below target (fewer than
  ``tgt_overlap_count`` links: the scheduler's rule, :mod:`vcd.post.coverage`; where expansion
  still has work).

Every full preview is a figure (:mod:`vcd.figure`): a title, axes in voxels (or trace cells), colour
bars with units and a legend on the image; traces are drawn white, on top of the patches.

Coordinates: points are ``(x, y, z)`` level-0 voxels; volume arrays ``[z, y, x]``. A slice image
shows columns = x, rows = y (axis z); columns = x, rows = z (axis y); columns = y, rows = z (axis x).
A level-0 coordinate ``c`` lands on pixel ``(c + 0.5) * f - 0.5`` with ``f = scale / 2**level``.
Every PNG carries a ``vcd`` text chunk (JSON) with its layout (slice box, scale, level, panels,
statistics) so tools can map pixels back to voxels.

**The preview folder** ``<volpkg>/.vcd/previews/`` (written by :func:`refresh_previews`, which the
daemon calls after each trace and every ``schedule.preview_seconds``):

- ``slice_z25.png``, ``slice_z50.png``, ``slice_z75.png`` — axis-z slices at 25/50/75 % depth;
- ``slice_y50.png`` — a y slice through the middle;
- ``density.png`` — the density map;
- ``trace_<name>.png`` and ``trace_<name>_qa.png`` — the three newest traces (older ones removed);
- ``index.json`` — ``{"updated": unix time, "files": [...], "density": stats}``.

Files are replaced atomically (temp file + rename), so a viewer never sees half a PNG.
"""

# one module per figure family — common.py (colours, the sampled volume, layouts), slices.py, traces.py,
# density.py, folder.py (the preview folder); the names below are the package's API (import them from here)
from .common import (AXES, STATUS_COLORS, TRACE_COLOR, count_color, count_colors, heat, pick_volume, read_layout,
                     stable_color)
from .slices import plane_segments, preview_slice, render_slice, slice_preview
from .traces import patch_status, preview_trace, qa_rgb, render_trace
from .density import density_grid, density_preview, preview_density, render_density, UNCOVERED_COLOR, under_colors
from .folder import refresh_previews

__all__ = ['AXES', 'count_color', 'count_colors', 'density_grid', 'density_preview', 'heat', 'patch_status',
           'pick_volume', 'plane_segments', 'preview_density', 'preview_slice', 'preview_trace', 'qa_rgb',
           'read_layout', 'refresh_previews', 'render_density', 'render_slice', 'render_trace',
           'slice_preview', 'stable_color', 'STATUS_COLORS', 'TRACE_COLOR', 'UNCOVERED_COLOR', 'under_colors']
