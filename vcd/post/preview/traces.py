"""Trace previews: a flattened trace (centre layer, sampled CT or QA map) with its patches' status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ...errors import FormatError, InputError
from ...figure import Axis, ColorBar, compose, save_png, upscale
from ...formats.jsonio import read_json
from ...formats.provenance import read_provenance
from ...formats.tifxyz import read_surface
from ...formats.volpkg import is_prediction_name, is_volpkg, open_volpkg
from ...formats.volume import Volume, open_volume
from ...kernels.points import valid_mask
from .common import _densify, _legend, pick_volume, STATUS_COLORS


# ------------------------------------------------------------------------------------------- traces

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
    """Render :func:`render_trace` to the PNG ``out``; returns its layout."""
    img, layout = render_trace(trace, **kw)
    save_png(img, Path(out), layout)
    return layout
