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

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw

from ..errors import FormatError, InputError
from ..figure import Axis, ColorBar, compose, font as _font, save_png, upscale
from ..formats.jsonio import atomic_write_json, read_json
from ..formats.overlaps import TGT_OVERLAP_COUNT, link_sets
from ..formats.provenance import read_provenance
from ..formats.tifxyz import INVALID, read_surface
from ..formats.volpkg import is_prediction_name, is_volpkg, list_patches, list_traces, open_volpkg, state_dir
from ..formats.volume import Volume, open_volume
from ..kernels.points import valid_mask, valid_quads
from .coverage import below_target, collection_stats

AXES = {"z": 0, "y": 1, "x": 2}          # index into the [z, y, x] volume shape
_PT = {"z": 2, "y": 1, "x": 0}           # index into an (x, y, z) point
_IMG = {"z": (0, 1), "y": (0, 2), "x": (1, 2)}  # (col, row) point components per axis
STATUS_COLORS = {"approved": (60, 200, 80), "defective": (230, 50, 50), "masked": (240, 170, 30),
                 "plain": (150, 150, 150), "missing": (90, 90, 200)}


# ------------------------------------------------------------------------------------------- helpers

def stable_color(name: str) -> tuple[int, int, int]:
    """A saturated RGB colour that depends only on ``name`` (sha1 → hue, saturation, value)."""
    h = hashlib.sha1(name.encode()).digest()
    hue = int.from_bytes(h[:4], "big") / 2 ** 32
    sat = 0.7 + 0.3 * h[4] / 255
    val = 0.85 + 0.15 * h[5] / 255
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))


def count_color(n: int, tgt: int) -> tuple[int, int, int]:
    """Blue (0 links) → green → red (``tgt`` or more links)."""
    f = min(1.0, n / max(1, tgt))
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb((1 - f) * 2 / 3, 0.9, 1.0))


def count_colors(v: np.ndarray, tgt: int) -> np.ndarray:
    """:func:`count_color` of every value of ``v`` (a colour bar's map): uint8 RGB ``[..., 3]``."""
    v = np.asarray(v, np.float64)
    return np.array([count_color(x, tgt) for x in v.ravel()], np.uint8).reshape(v.shape + (3,))


TRACE_COLOR = (255, 255, 255)   #: traces are drawn white, over a black outline, on top of the patches


_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def heat(v: np.ndarray) -> np.ndarray:
    """Luminance-monotonic colormap (black → purple → red → orange → pale yellow) for ``v`` in [0, 1]."""
    v = np.clip(np.asarray(v, np.float64), 0, 1) * (len(_HEAT) - 1)
    i = np.minimum(np.floor(v).astype(int), len(_HEAT) - 2)
    f = (v - i)[..., None]
    return np.round(_HEAT[i] * (1 - f) + _HEAT[i + 1] * f).astype(np.uint8)


def pick_volume(vp, name: str | None = None, prefer_ct: bool = True) -> Volume:
    """The named volume, else the CT (:meth:`~vcd.formats.volpkg.VolPkg.ct_name`), else the prediction."""
    if name is None and prefer_ct:
        name = vp.ct_name()
    return vp.volume(name)


def read_layout(png: str | os.PathLike) -> dict:
    """The ``vcd`` layout JSON stored in a preview PNG."""
    with Image.open(png) as im:
        return json.loads(im.text.get("vcd", "{}"))


def _legend(width: int, entries: list[tuple[tuple[int, int, int], str]], header: str, col_w: int = 230) -> Image.Image:
    font = _font(12)
    width = max(width, int(font.getlength(header)) + 10)
    ncol = max(1, width // col_w)
    shown = entries[:ncol * 8]
    rows = (len(shown) + ncol - 1) // ncol + (1 if len(entries) > len(shown) else 0)
    h = 20 + 16 * rows + 4
    im = Image.new("RGB", (width, h), (20, 20, 20))
    d = ImageDraw.Draw(im)
    d.text((4, 3), header, fill=(235, 235, 235), font=font)
    for i, (col, label) in enumerate(shown):
        x, y = 4 + (i % ncol) * col_w, 20 + 16 * (i // ncol)
        d.rectangle([x, y + 2, x + 12, y + 12], fill=col)
        d.text((x + 17, y), label, fill=(220, 220, 220), font=font)
    if len(entries) > len(shown):
        d.text((4, 20 + 16 * (rows - 1)), f"+{len(entries) - len(shown)} more", fill=(220, 220, 220), font=font)
    return im


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


# ------------------------------------------------------------------------------------------- traces

def _densify(points: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of a quad grid by ``factor`` (invalid where any quad corner is invalid)."""
    if factor <= 1:
        return points
    p = points.astype(np.float64)
    v = valid_mask(p)
    R, C = p.shape[:2]
    rr = np.linspace(0, R - 1, (R - 1) * factor + 1)
    cc = np.linspace(0, C - 1, (C - 1) * factor + 1)
    r0 = np.minimum(np.floor(rr).astype(int), R - 2) if R > 1 else np.zeros(len(rr), int)
    c0 = np.minimum(np.floor(cc).astype(int), C - 2) if C > 1 else np.zeros(len(cc), int)
    if R < 2 or C < 2:
        return points
    fr, fc = (rr - r0)[:, None, None], (cc - c0)[None, :, None]
    R0, C0 = r0[:, None], c0[None, :]
    out = (p[R0, C0] * (1 - fr) * (1 - fc) + p[R0, C0 + 1] * (1 - fr) * fc + p[R0 + 1, C0] * fr * (1 - fc)
           + p[R0 + 1, C0 + 1] * fr * fc)
    ok = valid_quads(v)[R0, C0]
    out[~ok] = INVALID
    return out.astype(np.float32)


def _trace_volume(trace: Path, meta: dict, volume: str | None) -> Volume:
    cands = [volume]
    try:
        cands.append((read_provenance(trace) or {}).get("volume"))
    except FormatError:
        pass
    params = meta.get("vc_grow_seg_from_segments_params")
    if isinstance(params, dict):
        cands += [params.get("volume"), params.get("volume_path")]
    for c in cands:
        if c and Path(c).is_dir():
            root = Path(c).parent.parent
            if volume is None and is_prediction_name(Path(c).name) and is_volpkg(root):
                return pick_volume(open_volpkg(root))  # the CT beside the prediction (VolPkg.ct_name), if any
            return open_volume(c)
    for root in (trace.parent.parent, trace.parent.parent.parent):
        if is_volpkg(root):
            return pick_volume(open_volpkg(root))
    raise InputError(trace, "cannot find the volume to sample the trace from",
                     "pass --volume PATH.zarr (or render layers/ first)")


def patch_status(trace: Path) -> dict[str, str]:
    """Annotation status of a trace's supporting patches (provenance ``patches``): approved,
    defective, masked or plain — read from the patch on disk when it still exists, else from
    the provenance; ``missing`` when neither says anything."""
    prov = read_provenance(trace)
    if prov is None:
        return {}
    src = Path(prov.get("src_dir") or trace.parent)
    out = {}
    names = dict(prov.get("patches") or {})
    for n in prov.get("excluded_defective") or []:
        names.setdefault(n, {"tags": ["defective"]})
    for name, info in names.items():
        d = src / name
        tags, masked = list((info or {}).get("tags") or []), bool((info or {}).get("mask_sha1"))
        if (d / "meta.json").exists():
            try:
                m = read_json(d / "meta.json", "surface meta.json")
                tags = list(m.get("tags") or {}) if isinstance(m.get("tags"), dict) else tags
                masked = (d / "mask.tif").exists()
            except FormatError:
                pass
        out[name] = ("defective" if "defective" in tags else "approved" if "approved" in tags
                     else "masked" if masked else "plain")
    return out


def render_trace(trace, qa: bool = False, volume: str | None = None, max_size: int = 2048) -> tuple[Image.Image, dict]:
    """A flattened view of a trace (centre layer, sampled CT, or QA map) + patch-status legend."""
    trace = Path(trace)
    if not (trace / "meta.json").exists():
        raise InputError(trace, "not a trace directory (no meta.json)", "pass a traces/auto_trace_* directory")
    meta = read_json(trace / "meta.json", "surface meta.json")
    source = None
    if qa:
        if not (trace / "qa.tif").exists():
            raise InputError(trace / "qa.tif", "trace has no QA map", "retrace it with vcd (vcd trace writes qa.tif)")
        q = np.squeeze(tifffile.imread(trace / "qa.tif")).astype(np.float32)
        img, k = upscale(qa_rgb(q))
        source, unit, per_unit = "qa.tif", "trace cells", k
        bar = ColorBar(qa_rgb, 0.0, 1.0, "suspicion (0 = fine, >= 0.5 suspicious: mask there; black = no corner)")
    else:
        layers = sorted((trace / "layers").glob("*.tif")) if (trace / "layers").is_dir() else []
        if layers:
            lay = np.squeeze(tifffile.imread(layers[len(layers) // 2]))
            if lay.dtype == np.uint16:
                lay = (lay // 257).astype(np.uint8)
            elif lay.dtype != np.uint8:
                lay = np.clip(lay, 0, 255).astype(np.uint8)
            source = f"layers/{layers[len(layers) // 2].name}"
            gray, unit, per_unit = lay, "layer pixels", 1.0
        else:
            s = read_surface(trace)
            vol = _trace_volume(trace, meta, volume)
            sx = s.scale[0]
            factor = max(1, int(round(1.0 / sx)))
            R, C = s.shape
            while factor > 1 and max(R, C) * factor > max_size:
                factor -= 1
            pts = _densify(s.points, factor)
            ok = valid_mask(pts)
            gray = np.zeros(pts.shape[:2], np.uint8)
            if ok.any():
                vals = vol.sampler(cache_bytes=2e8).sample(pts[ok])
                gray[ok] = np.clip(vals, 0, 255).astype(np.uint8)
            source = f"sampled {vol.path.name}"
            unit, per_unit = "trace grid points", float(factor)
        h = max(gray.shape)
        if h > max_size:
            st = int(np.ceil(h / max_size))
            gray = gray[::st, ::st]
            per_unit /= st
        gray, k = upscale(gray[..., None])
        per_unit *= k
        img = np.repeat(gray, 3, -1)
        bar = ColorBar(lambda v: np.repeat(np.clip(v, 0, 255).astype(np.uint8)[..., None], 3, -1), 0, 255,
                       "CT along the surface (uint8 voxel value)")
    im = Image.fromarray(np.ascontiguousarray(img), "RGB")
    status = patch_status(trace)
    counts = {k2: sum(v == k2 for v in status.values()) for k2 in STATUS_COLORS}
    order = {"defective": 0, "masked": 1, "approved": 2, "plain": 3, "missing": 4}
    entries = [(STATUS_COLORS[st], f"{st}: {n.replace('auto_grown_', '')}")
               for n, st in sorted(status.items(), key=lambda kv: (order[kv[1]], kv[0]))]
    header = (f"{trace.name} ({source})  patches: " +
              ", ".join(f"{counts[k2]} {k2}" for k2 in ("approved", "defective", "masked", "plain") if counts[k2])
              if status else f"{trace.name} ({source})  no provenance")
    fig, fl = compose(im, f"{trace.name}: " + ("QA map, where a sheet jump is likely" if qa else "flattened"),
                      x=Axis(f"column ({unit})", -0.5, im.width / per_unit - 0.5),
                      y=Axis(f"row ({unit})", -0.5, im.height / per_unit - 0.5), colorbars=[bar],
                      subtitle=f"source: {source}", legend=_legend(max(im.width, 480), entries, header))
    return fig, {"kind": "trace_qa" if qa else "trace", "trace": trace.name, "source": source,
                 "image_box": fl["plot_box"], "pixels_per_unit": per_unit, "unit": unit, **fl,
                 "patch_status": status, "status_counts": counts}


def qa_rgb(q: np.ndarray) -> np.ndarray:
    """QA colours of ``qa.tif`` values: green (0, fine) → red (1, suspicious); black = no corner (< 0)."""
    q = np.asarray(q, np.float64)
    ok, g = q >= 0, np.clip(q, 0, 1)
    rgb = np.zeros(q.shape + (3,), np.uint8)
    rgb[..., 0] = np.where(ok, 40 + 215 * g, 0)
    rgb[..., 1] = np.where(ok, 200 * (1 - g) + 30, 0)
    rgb[..., 2] = np.where(ok, 50, 0)
    return rgb


def preview_trace(trace, out, **kw) -> dict:
    img, layout = render_trace(trace, **kw)
    save_png(img, Path(out), layout)
    return layout


# ------------------------------------------------------------------------------------------- density

def density_grid(volpkg, bin_size: int | None = None, tgt: int | None = None) -> dict:
    """Patch coverage per bin of the volume (arrays ``[bz, by, bx]``, bins of ``bin`` voxels, a power
    of two): ``counts`` int32 (patches with a point in the bin), ``under`` int32 (of those, patches
    *below target* — fewer than ``tgt`` links, the scheduler's rule :func:`vcd.post.coverage.below_target`),
    ``sheet`` bool (the prediction has sheet voxels in the bin), and ``stats``:

    - ``below_target_fraction``: share of patches below target — exactly what the daemon's
      scheduler compares with ``target_density`` (:func:`vcd.post.coverage.collection_stats`:
      ``1 - density``), with ``patches_below_target`` / ``patches``;
    - ``uncovered_fraction``: share of sheet bins no patch covers;
    - ``under_bins_fraction``: share of covered bins holding a patch below target (where expansion
      still has work)."""
    vp = open_volpkg(volpkg)
    pred = vp.volume(None)
    Z, Y, X = pred.shape
    if bin_size is None:
        bin_size = 8
        while max(Z, Y, X) / bin_size > 64:
            bin_size *= 2
    b = int(bin_size)
    nb = [(s + b - 1) // b for s in (Z, Y, X)]
    tgt = int(tgt) if tgt else TGT_OVERLAP_COUNT
    counts = np.zeros(nb, np.int32)
    under = np.zeros(nb, np.int32)
    n_patches = 0
    links = link_sets(vp.paths_dir)
    for d, _m in list_patches(vp.paths_dir):
        flat = _patch_bins(d, b, nb)
        if flat is None:
            continue
        n_patches += 1
        counts.ravel()[flat] += 1
        if below_target(len(links.get(d.name, ())), tgt):
            under.ravel()[flat] += 1
    sheet = _sheet_bins(pred, b, nb)
    col = collection_stats(vp.path, tgt)
    ns, covered = int(sheet.sum()), counts > 0
    stats = {"patches": n_patches, "bin": b, "bins": nb, "sheet_bins": ns, "tgt_overlap_count": tgt,
             "below_target_fraction": 1.0 - col["density"] if col["patches"] else 1.0,
             "patches_below_target": col["overlap_deficit"],
             "uncovered_fraction": float((sheet & ~covered).sum() / ns) if ns else 1.0,
             "under_bins_fraction": float((under > 0).sum() / max(1, covered.sum())),
             "max_count": int(counts.max()) if counts.size else 0}
    return {"counts": counts, "under": under, "sheet": sheet, "bin": b, "stats": stats}


def _patch_bins(d: Path, b: int, nb: list[int]) -> np.ndarray | None:
    """Flat indices of the ``b``-voxel bins (grid ``nb`` = [bz, by, bx]) patch ``d`` has points in."""
    try:
        s = read_surface(d)
    except FormatError:
        return None
    step = 1.0 / max(s.scale[0], 1e-6)
    pts = _densify(s.points, max(1, int(np.ceil(step / (b / 2)))))
    ok = valid_mask(pts)
    if not ok.any():
        return None
    ijk = np.clip(np.floor(pts[ok][:, ::-1] / b).astype(np.int64), 0, np.array(nb) - 1)
    return np.unique(np.ravel_multi_index(tuple(ijk.T), nb))


def _sheet_bins(pred: Volume, b: int, nb: list[int]) -> np.ndarray:
    """Bins (bool [bz, by, bx]) where the prediction has sheet voxels (> 127), read from the
    coarsest pyramid level not coarser than a bin."""
    level = 0
    while level + 1 < len(pred.levels) and 2 ** (level + 1) <= b:
        level += 1
    ls = pred.levels[level].shape
    data = pred.read_region_u8(0, ls[0], 0, ls[1], 0, ls[2], level=level) > 127
    r = b // 2 ** level
    pad = [(0, nb[i] * r - ls[i]) if nb[i] * r >= ls[i] else (0, 0) for i in range(3)]
    data = np.pad(data, pad)[:nb[0] * r, :nb[1] * r, :nb[2] * r]
    return data.reshape(nb[0], r, nb[1], r, nb[2], r).any(axis=(1, 3, 5))


UNCOVERED_COLOR = (40, 70, 170)   #: density map: sheet that no patch covers


def under_colors(frac: np.ndarray) -> np.ndarray:
    """Green (0: every covering patch at target) → red (1: all below target), uint8 RGB."""
    f = np.clip(np.asarray(frac, np.float64), 0, 1)
    return np.stack([40 + 190 * f, 170 * (1 - f) + 30, np.full(f.shape, 40.0)], -1).astype(np.uint8)


def _density_panels(counts, under, sheet, tgt):
    """Per projection (along z, y, x): the count row (max patches per bin, heat) and the target row
    (share of the covered bins along the ray that hold a patch below target; blue: sheet nobody
    covers; black: nothing)."""
    views = [("XY (along z)", 0, "x", "y"), ("XZ (along y)", 1, "x", "z"), ("YZ (along x)", 2, "y", "z")]
    out = []
    for row in ("count", "below_target"):
        for title, ax, cname, rname in views:
            if row == "count":
                rgb = heat(counts.max(axis=ax) / max(1, tgt))
            else:
                cov = (counts > 0).sum(axis=ax)
                frac = (under > 0).sum(axis=ax) / np.maximum(cov, 1)
                rgb = np.where((cov > 0)[..., None], under_colors(frac), 0).astype(np.uint8)
                rgb[(cov == 0) & sheet.any(axis=ax)] = UNCOVERED_COLOR
                title = title.split()[0] + " below target"
            out.append((title, ax, cname, rname, row, rgb))
    return out


def render_density(volpkg, bin_size: int | None = None, panel: int = 256,
                   tgt: int | None = None) -> tuple[Image.Image, dict]:
    """Max projections of the per-bin patch count along z, y and x (top row, heat: 0 → black,
    ≥ ``tgt_overlap_count`` → pale yellow) and, per ray, the share of covered bins holding a patch
    below target — fewer than ``tgt_overlap_count`` links, the scheduler's rule (bottom row: green =
    done, red = all below target, blue = sheet no patch covers, black = no sheet). Axes in voxels,
    colour bars with units, the scheduler's density in the title."""
    g = density_grid(volpkg, bin_size, tgt)
    counts, under, sheet, st = g["counts"], g["under"], g["sheet"], g["stats"]
    tgt, b = st["tgt_overlap_count"], st["bin"]
    framed = []
    for title, ax, cname, rname, row, rgb in _density_panels(counts, under, sheet, tgt):
        k = max(1, panel // max(rgb.shape[:2]))
        img = Image.fromarray(np.ascontiguousarray(np.repeat(np.repeat(rgb, k, 0), k, 1)), "RGB")
        fig, fl = compose(img, title, x=Axis(f"{cname} (voxels)", 0, rgb.shape[1] * b),
                          y=Axis(f"{rname} (voxels)", 0, rgb.shape[0] * b))
        framed.append((fig, fl, title, ax, row, k))
    pw = max(f[0].width for f in framed)
    ph = [max(f[0].height for f in framed[:3]), max(f[0].height for f in framed[3:])]
    grid = Image.new("RGB", (3 * pw, ph[0] + ph[1]), (20, 20, 20))
    panels = []
    for i, (fig, fl, title, ax, row, k) in enumerate(framed):
        x0, y0 = (i % 3) * pw, 0 if i < 3 else ph[0]
        grid.paste(fig, (x0, y0))
        bx, by, bw, bh = fl["plot_box"]
        panels.append({"title": title, "projected_axis": "zyx"[ax], "box": [x0 + bx, y0 + by, bw, bh],
                       "pixels_per_bin": k, "row": row})
    legend = _legend(grid.width, [(UNCOVERED_COLOR, "sheet that no patch covers"), ((0, 0, 0), "no sheet")],
                     "bottom row: green = every patch there has its links, red = patches below target")
    below = st["below_target_fraction"]
    fig, fl = compose(
        grid, f"Density: {st['patches_below_target']} of {st['patches']} patches below target "
              f"({100 * below:.1f}%, fewer than {tgt} links - the scheduler's rule)",
        subtitle=f"bins of {b} vx; sheet uncovered: {100 * st['uncovered_fraction']:.1f}%; covered bins "
                 f"with a patch below target: {100 * st['under_bins_fraction']:.1f}%; max {st['max_count']} "
                 f"patches per bin",
        colorbars=[ColorBar(lambda v: heat(v / max(1, tgt)), 0, tgt, f"top row: patches per {b}-voxel bin "
                            f"(max along the ray; {tgt} = tgt_overlap_count)"),
                   ColorBar(under_colors, 0, 1, "bottom row: share of the covered bins along the ray that hold a "
                            "patch below target", ticks=[0, 0.25, 0.5, 0.75, 1],
                            tick_labels=["0%", "25%", "50%", "75%", "100%"])],
        legend=legend)
    gx, gy = fl["plot_box"][:2]
    for p_ in panels:
        p_["box"][0] += gx
        p_["box"][1] += gy
    return fig, {"kind": "density", "panels": panels, "stats": st, "title_box": fl["title_box"],
                 "colorbars": fl["colorbars"]}


def preview_density(volpkg, out, **kw) -> dict:
    img, layout = render_density(volpkg, **kw)
    save_png(img, Path(out), layout)
    return layout


# ------------------------------------------------------------------------------------------- short forms

def slice_preview(volpkg, axis: str = "z", index: int | None = None, volume: str | None = None,
                  color_by: str = "patch", out=None, zoom: int | None = None, legend: bool = False) -> Path:
    """Write a slice preview (default without the legend strip, so pixel (row, col) is the slice
    pixel at ``zoom``× enlargement); returns the PNG path."""
    out = Path(out or state_dir(volpkg) / "previews" / f"slice_{axis}.png")
    preview_slice(volpkg, out, axis=axis, index=index, volume=volume, color_by=color_by, scale=zoom, legend=legend)
    return out


def density_preview(volpkg, out=None, tgt: int | None = None) -> tuple[Path, float]:
    """Write a density preview; returns ``(png, share of patches below target)`` — the scheduler's
    measure (``1 - density`` of :func:`vcd.post.coverage.collection_stats`)."""
    out = Path(out or state_dir(volpkg) / "previews" / "density.png")
    st = preview_density(volpkg, out, tgt=tgt)["stats"]
    return out, st["below_target_fraction"]


# ------------------------------------------------------------------------------------------- folder

def refresh_previews(volpkg, n_traces: int = 3, tgt: int | None = None) -> list[Path]:
    """Write the standard previews into ``<volpkg>/.vcd/previews/`` (see the module docstring);
    ``tgt``: the daemon's ``tgt_overlap_count`` (:func:`vcd.daemon.config.tgt_overlap_count`;
    default VC3D's 20), for the density preview and the slices' link colours.

    Each preview that fails (e.g. no volume yet) is skipped; returns the files written."""
    vp = open_volpkg(volpkg)
    out = vp.state_dir / "previews"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict = {"updated": time.time(), "files": [], "errors": {}}

    def attempt(name, fn):
        try:
            res = fn(out / name)
            written.append(out / name)
            index["files"].append(name)
            return res
        except (FormatError, InputError, OSError, ValueError, MemoryError) as exc:
            index["errors"][name] = str(getattr(exc, "message", exc))
            return None

    try:
        Z = pick_volume(vp).shape[0]
    except (FormatError, InputError):
        Z = None
    if Z:
        for pct in (25, 50, 75):
            attempt(f"slice_z{pct}.png", lambda p, pct=pct: preview_slice(vp.path, p, axis="z", index=Z * pct // 100,
                                                                     tgt=tgt))
        attempt("slice_y50.png", lambda p: preview_slice(vp.path, p, axis="y", tgt=tgt))
    dens = attempt("density.png", lambda p: preview_density(vp.path, p, tgt=tgt))
    if dens:
        index["density"] = dens["stats"]
    traces = [d for d, _ in list_traces(vp.path)]
    traces = sorted(traces, key=lambda d: (d / "meta.json").stat().st_mtime, reverse=True)[:n_traces]
    keep = set()
    for t in traces:
        for suffix, qa in (("", False), ("_qa", True)):
            name = f"trace_{t.name}{suffix}.png"
            keep.add(name)
            if qa and not (t / "qa.tif").exists():
                continue
            attempt(name, lambda p, t=t, qa=qa: preview_trace(t, p, qa=qa))
    for old in out.glob("trace_*.png"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    atomic_write_json(out / "index.json", index)
    return written
