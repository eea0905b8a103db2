"""Slice previews: a volume slice with every patch's and trace's intersection drawn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...errors import FormatError, InputError
from ...figure import Axis, ColorBar, compose, save_png
from ...formats.overlaps import TGT_OVERLAP_COUNT, link_sets
from ...formats.tifxyz import read_surface
from ...formats.volpkg import is_prediction_name, list_patches, list_traces, open_volpkg, state_dir
from ...kernels.points import valid_mask, valid_quads
from .common import _IMG, _legend, _PT, AXES, count_color, count_colors, pick_volume, stable_color, TRACE_COLOR


# ------------------------------------------------------------------------------------------- slices

def plane_segments(points: np.ndarray, axis: str, index: float) -> np.ndarray:
    """Segments where the plane ``axis = index`` cuts a quad-grid surface: float ``[M, 2, 3]`` (x, y, z).

    Each quad whose four corners are valid is split into triangles (p00, p01, p10) and
    (p11, p10, p01); a triangle with vertices on both sides (``s > 0`` vs ``s <= 0`` where
    ``s = coord - index``) contributes the segment between its two crossing edges.
    """
    p = np.asarray(points, np.float64)
    q = valid_quads(valid_mask(p))
    if not q.any():
        return np.zeros((0, 2, 3))
    a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
    tri = np.concatenate([np.stack([a, b, c], 1), np.stack([d, c, b], 1)])  # [n, 3, 3]
    s = tri[..., _PT[axis]] - float(index)
    side = s > 0
    keep = side.any(1) & ~side.all(1)
    tri, s, side = tri[keep], s[keep], side[keep]
    if not len(tri):
        return np.zeros((0, 2, 3))
    e0, e1 = np.array([0, 1, 2]), np.array([1, 2, 0])
    cross = side[:, e0] != side[:, e1]                                     # exactly two per triangle
    si, sj = s[:, e0], s[:, e1]
    den = np.where(cross, si - sj, 1.0)
    t = np.where(cross, si / den, 0.0)[..., None]
    pts = tri[:, e0] + t * (tri[:, e1] - tri[:, e0])                       # [n, 3 edges, 3]
    r, e = np.nonzero(cross)
    return pts[r, e].reshape(-1, 2, 3)


def _surfaces_for_slice(vp, axis: str, index: float):
    """Yield ``(kind, name, dir)`` for patches and traces whose bbox spans the plane."""
    k = _PT[axis]
    items = [("patch", d.name, d, m) for d, m in list_patches(vp.paths_dir)]
    items += [("trace", d.name, d, meta) for d, meta in list_traces(vp.path)]
    for kind, name, d, meta in items:
        bb = meta.get("bbox") if isinstance(meta, dict) else None
        try:
            if bb and not (bb[0][k] - 1 <= index <= bb[1][k] + 1):
                continue
        except (TypeError, IndexError):
            pass
        yield kind, name, d


def render_slice(volpkg, axis: str = "z", index: int | None = None, volume: str | None = None,
                 color_by: str = "patch", scale: int | None = None, max_size: int = 2048,
                 min_size: int = 640, legend: bool = True, tgt: int | None = None) -> tuple[Image.Image, dict]:
    """Render one slice with patch/trace intersections; returns ``(image, layout)``.

    ``index`` is the level-0 voxel index along ``axis`` (default: the middle). The slice is read
    from the coarsest pyramid level that keeps it ≤ ``max_size`` pixels, then enlarged by the
    integer ``scale`` (default: up to ``min_size`` pixels, at most 8×). ``tgt``: the links per patch
    coloured red under ``color_by="overlaps"`` (the daemon's
    :func:`vcd.daemon.config.tgt_overlap_count`; default VC3D's 20).
    """
    if axis not in AXES:
        raise InputError(axis, "axis must be z, y or x", "pass --axis z|y|x")
    if color_by not in ("patch", "overlaps"):
        raise InputError(color_by, "color-by must be patch or overlaps", "pass --color-by patch|overlaps")
    vp = open_volpkg(volpkg)
    vol = pick_volume(vp, volume)
    Z, Y, X = vol.shape
    n = vol.shape[AXES[axis]]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise InputError(vp.path, f"--index {index} is outside the volume ({axis} has 0..{n - 1})",
                         f"pass an index in 0..{n - 1}")
    dims = [s for i, s in enumerate(vol.shape) if i != AXES[axis]]
    level = 0
    while max(dims) / 2 ** level > max_size and level + 1 < len(vol.levels):
        level += 1
    ls = vol.levels[level].shape
    il = min(index >> level, ls[AXES[axis]] - 1)
    box = [0, ls[0], 0, ls[1], 0, ls[2]]
    box[2 * AXES[axis]], box[2 * AXES[axis] + 1] = il, il + 1
    img = np.squeeze(vol.read_region_u8(*box, level=level), axis=AXES[axis]).astype(np.float32)
    grey = _grey_map(img, is_prediction_name(vol.path.name))
    base = grey(img)
    if scale is None:
        scale = 1 if level > 0 else max(1, min(8, min_size // max(img.shape)))
    scale = max(1, int(scale))
    base = np.repeat(np.repeat(base.astype(np.uint8), scale, 0), scale, 1)
    im = Image.fromarray(np.stack([base] * 3, -1), "RGB")
    draw = ImageDraw.Draw(im)
    f = scale / 2 ** level
    w = max(1, int(round(scale / 2)))
    tgt = int(tgt) if tgt else TGT_OVERLAP_COUNT
    ci, ri = _IMG[axis]
    patches, traces, legend_entries = [], [], []
    surfs = list(_surfaces_for_slice(vp, axis, index))
    links = link_sets(vp.paths_dir) if color_by == "overlaps" else {}
    for kind in ("patch", "trace"):  # patches first, traces on top (white over a black outline)
        for k2, name, d in surfs:
            if k2 != kind:
                continue
            try:
                s = read_surface(d)
            except FormatError:
                continue
            segs = plane_segments(s.points, axis, index)
            if not len(segs):
                continue
            if kind == "trace":
                col = TRACE_COLOR
            elif color_by == "overlaps":
                col = count_color(len(links.get(d.name, ())), tgt)
            else:
                col = stable_color(name)
            px = (segs[..., ci] + 0.5) * f - 0.5
            py = (segs[..., ri] + 0.5) * f - 0.5
            if kind == "trace":
                for (x0, x1), (y0, y1) in zip(px, py):
                    draw.line([(x0, y0), (x1, y1)], fill=(0, 0, 0), width=w + 4)
            for (x0, x1), (y0, y1) in zip(px, py):
                draw.line([(x0, y0), (x1, y1)], fill=col, width=w + 2 if kind == "trace" else w)
            (traces if kind == "trace" else patches).append(name)
            if kind == "trace" or color_by == "patch":
                legend_entries.append((col, ("trace " if kind == "trace" else "") + name.replace("auto_grown_", "")))
    if color_by == "overlaps":
        legend_entries = [(count_color(c, tgt), f"{c}{'+' if c == tgt else ''} links")
                          for c in sorted({0, tgt // 4, tgt // 2, 3 * tgt // 4, tgt})] + \
                         [e for e in legend_entries if e[1].startswith("trace ")]
    layout = {"kind": "slice", "axis": axis, "index": index, "level": level, "scale": scale, "factor": f,
              "slice_box": [0, 0, im.width, im.height], "volume": vol.path.name, "color_by": color_by,
              "patches": patches, "traces": traces, "tgt_overlap_count": tgt, "trace_color": list(TRACE_COLOR)}
    if not legend:
        return im, layout
    cname, rname = "xyz"[ci], "xyz"[ri]
    bars = [ColorBar(lambda v: np.repeat(grey(v)[..., None], 3, -1).astype(np.uint8), 0, 255, grey.label)]
    if color_by == "overlaps":
        bars.append(ColorBar(lambda v: count_colors(v, tgt), 0, tgt,
                             f"links per patch (overlapping.json); red = tgt_overlap_count {tgt} or more"))
    key = "colour per patch" if color_by == "patch" else "patches coloured by links"
    fig, fl = compose(im, f"{vol.path.name}: {axis} = {index} voxels",
                      x=Axis(f"{cname} (voxels)", -0.5, im.width / f - 0.5),
                      y=Axis(f"{rname} (voxels)", -0.5, im.height / f - 0.5), colorbars=bars,
                      subtitle=f"level {level}, {scale}x; {len(patches)} patches ({key}), "
                               f"{len(traces)} traces (white, on top)",
                      legend=_legend(max(im.width, 480), legend_entries, "legend"))
    layout.update(fl, slice_box=fl["plot_box"])
    return fig, layout


def _grey_map(img: np.ndarray, pred: bool):
    """The slice's display map uint8 value → grey (CT: 1–99.5 percentile stretch to 0..215;
    prediction: × 0.55, so coloured lines stand out), with its colour-bar label."""
    if pred:
        def grey(v):
            return (np.asarray(v, np.float32) * 0.55).astype(np.uint8)
        grey.label = "prediction (uint8 voxel value; 255 = sheet)"
    else:
        lo, hi = np.percentile(img, [1, 99.5])

        def grey(v):
            return (np.clip((np.asarray(v, np.float32) - lo) / max(hi - lo, 1.0), 0, 1) * 215).astype(np.uint8)
        grey.label = f"CT (uint8 voxel value; {lo:.0f}..{hi:.0f} stretched)"
    return grey


def preview_slice(volpkg, out, **kw) -> dict:
    """:func:`render_slice` written to ``out`` (PNG); returns the layout."""
    img, layout = render_slice(volpkg, **kw)
    save_png(img, Path(out), layout)
    return layout


def slice_preview(volpkg, axis: str = "z", index: int | None = None, volume: str | None = None,
                  color_by: str = "patch", out=None, zoom: int | None = None, legend: bool = False) -> Path:
    """Write a slice preview (default without the legend strip, so pixel (row, col) is the slice
    pixel at ``zoom``× enlargement); returns the PNG path."""
    out = Path(out or state_dir(volpkg) / "previews" / f"slice_{axis}.png")
    preview_slice(volpkg, out, axis=axis, index=index, volume=volume, color_by=color_by, scale=zoom, legend=legend)
    return out
