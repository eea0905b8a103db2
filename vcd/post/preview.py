"""PNG previews a person would rather look at than read.

- :func:`slice_preview`: a volume slice (axis z, y or x at an index) with the intersection of every
  patch and trace drawn on it — coloured by patch (stable colour per name) or by overlap count;
- :func:`trace_preview`: a flattened view of a trace (its rendered centre layer if ``layers/``
  exists, else the volume sampled along the surface, or its QA map) with a strip showing the
  annotation status of its supporting patches (green approved, red defective, orange masked);
- :func:`density_preview`: how many patches cover each (x, z) column bin (8 voxels; brightness
  relative to the densest bin) — where expansion still has work (dark = uncovered).

:func:`refresh_previews` writes a small fixed set into ``<volpkg>/.vcd/previews/``
(``slice_z.png``, ``slice_y.png``, ``density.png``, ``trace_<name>.png`` for the latest traces);
the daemon refreshes them after traces and on ``[schedule] preview_seconds``.

Intersections: each valid quad is split into two triangles and each triangle is cut by the plane;
the cut segment is drawn. Points are (x, y, z); volume arrays are [z, y, x].
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..formats.overlaps import read_overlaps
from ..formats.tifxyz import read_surface
from ..formats.volpkg import list_patches, open_volpkg
from ..formats.volume import open_volume

AXES = {"z": 2, "y": 1, "x": 0}


def colour(name: str) -> tuple[int, int, int]:
    h = hashlib.md5(name.encode()).digest()
    return (80 + h[0] % 176, 80 + h[1] % 176, 80 + h[2] % 176)


def plane_segments(points: np.ndarray, valid: np.ndarray, axis: int, value: float) -> np.ndarray:
    """(N, 2, 3) segments where the plane ``point[axis] = value`` cuts the surface's triangles."""
    P = points.astype(np.float64)
    q = valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:] & valid[1:, 1:]
    segs = []
    a, b, c, d = P[:-1, :-1][q], P[:-1, 1:][q], P[1:, :-1][q], P[1:, 1:][q]
    for tri in ((a, b, c), (d, c, b)):
        vals = [t[:, axis] - value for t in tri]
        pts_out = []
        for i, j in ((0, 1), (1, 2), (2, 0)):
            vi, vj = vals[i], vals[j]
            cross = (vi * vj) < 0
            t = np.where(cross, vi / np.where(cross, vi - vj, 1), 0)
            pts_out.append((cross, tri[i] + t[:, None] * (tri[j] - tri[i])))
        m = np.stack([c for c, _ in pts_out], 1)
        two = m.sum(1) == 2
        for k in np.nonzero(two)[0]:
            e = [p[k] for (cr, p) in pts_out if cr[k]]
            segs.append(e[:2])
    return np.array(segs).reshape(-1, 2, 3)


def _default_volume(vp):
    names = vp.volume_names()
    ct = [n for n in names if "pred" not in n and "surface" not in n]
    return vp.volumes_dir / (ct or names)[0]


def slice_preview(volpkg, axis: str = "z", index: int | None = None, volume: str | None = None,
                  color_by: str = "patch", out: str | os.PathLike | None = None, zoom: int | None = None) -> Path:
    vp = open_volpkg(volpkg)
    vol = open_volume(vp.volumes_dir / volume if volume else _default_volume(vp))
    Z, Y, X = vol.shape
    ax = AXES[axis]
    index = int(index if index is not None else (Z, Y, X)[2 - ax] // 2)
    if axis == "z":
        img = vol.read_region_u8(index, index + 1, 0, Y, 0, X)[0]
    elif axis == "y":
        img = vol.read_region_u8(0, Z, index, index + 1, 0, X)[:, 0]
    else:
        img = vol.read_region_u8(0, Z, 0, Y, index, index + 1)[:, :, 0]
    k = zoom or max(1, 640 // max(img.shape))  # small volumes are drawn enlarged
    canvas = Image.fromarray(img).convert("RGB").resize((img.shape[1] * k, img.shape[0] * k), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    surfaces = [(p, "patch") for p, _ in list_patches(vp.paths_dir)]
    for root in (vp.paths_dir, vp.traces_dir):
        if root.is_dir():
            surfaces += [(p, "trace") for p in sorted(root.glob("auto_trace_*")) if (p / "meta.json").exists()]
    counts = {p.name: len(read_overlaps(p)) for p, k in surfaces if k == "patch"}
    top = max(counts.values(), default=1) or 1
    u, v = [(0, 1), (0, 2), (1, 2)][["z", "y", "x"].index(axis)]  # image columns, rows as point indices
    for path, kind in surfaces:
        try:
            s = read_surface(path)
        except Exception:
            continue
        segs = plane_segments(s.points, s.valid, ax, index)
        if kind == "trace":
            col = (255, 255, 255)
        elif color_by == "overlaps":
            f = counts.get(path.name, 0) / top
            col = (int(255 * (1 - f)), int(255 * f), 60)
        else:
            col = colour(path.name)
        for seg in segs:
            draw.line([((seg[0][u] + 0.5) * k, (seg[0][v] + 0.5) * k), ((seg[1][u] + 0.5) * k, (seg[1][v] + 0.5) * k)],
                      fill=col, width=(2 if kind == "trace" else 1) * max(1, k // 2))
    out = Path(out) if out else vp.state_dir / "previews" / f"slice_{axis}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def density_preview(volpkg, out=None, tgt: int = 20) -> tuple[Path, float]:
    """Patch coverage count per (x, z) bin of 8 voxels; returns (png, share of occupied bins < tgt)."""
    vp = open_volpkg(volpkg)
    vol = open_volume(_default_volume(vp))
    Z, Y, X = vol.shape
    b = 8
    cnt = np.zeros((Z // b + 1, X // b + 1), np.int32)
    for p, _ in list_patches(vp.paths_dir):
        s = read_surface(p)
        pts = s.points[s.valid]
        cells = np.unique(np.stack([pts[:, 2] // b, pts[:, 0] // b], 1).astype(int), axis=0)
        cnt[cells[:, 0], cells[:, 1]] += 1
    img = (255 * np.minimum(1.0, cnt / max(cnt.max(), 1))).astype(np.uint8)
    out = Path(out) if out else vp.state_dir / "previews" / "density.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((img.shape[1] * 4, img.shape[0] * 4), Image.NEAREST).save(out)
    occ = cnt > 0
    return out, float((cnt[occ] < tgt).mean()) if occ.any() else 1.0


def trace_preview(trace_dir, out=None, qa: bool = False, volume: str | None = None) -> Path:
    trace_dir = Path(trace_dir)
    s = read_surface(trace_dir)
    layers = sorted((trace_dir / "layers").glob("*.tif")) if (trace_dir / "layers").is_dir() else []
    if qa and (trace_dir / "qa.png").exists():
        img = Image.open(trace_dir / "qa.png").convert("RGB")
    elif layers:
        import tifffile
        img = Image.fromarray(tifffile.imread(layers[len(layers) // 2])).convert("RGB")
    else:
        prov = json.loads((trace_dir / "vcd_provenance.json").read_text()) if (trace_dir / "vcd_provenance.json").exists() else {}
        vpath = volume or prov.get("volume") or _default_volume(open_volpkg(trace_dir.parent.parent))
        vol = open_volume(vpath)
        vals = np.zeros(s.shape, np.float32)
        vals[s.valid] = vol.sampler().sample(s.points[s.valid])
        img = Image.fromarray(vals.astype(np.uint8)).convert("RGB")
    prov_path = trace_dir / "vcd_provenance.json"
    strip = Image.new("RGB", (img.width, 12), (30, 30, 30))
    if prov_path.exists():
        pats = json.loads(prov_path.read_text()).get("patches", {})
        d = ImageDraw.Draw(strip)
        w = max(1, img.width // max(1, len(pats)))
        for i, (name, info) in enumerate(sorted(pats.items())):
            tags = info.get("tags", [])
            col = (60, 200, 60) if "approved" in tags else (220, 50, 50) if "defective" in tags else \
                (240, 150, 30) if info.get("mask_sha1") else (120, 120, 120)
            d.rectangle([i * w, 0, i * w + w - 1, 11], fill=col)
    canvas = Image.new("RGB", (img.width, img.height + 12))
    canvas.paste(img, (0, 0))
    canvas.paste(strip, (0, img.height))
    out = Path(out) if out else trace_dir.parent.parent / ".vcd" / "previews" / f"trace_{trace_dir.name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def refresh_previews(volpkg) -> list[Path]:
    vp = open_volpkg(volpkg)
    out = [slice_preview(volpkg, "z"), slice_preview(volpkg, "y"), density_preview(volpkg)[0]]
    traces = []
    for root in (vp.paths_dir, vp.traces_dir):
        if root.is_dir():
            traces += [p for p in root.glob("auto_trace_*") if (p / "meta.json").exists()]
    for t in sorted(traces)[-3:]:
        out.append(trace_preview(t))
    return out
