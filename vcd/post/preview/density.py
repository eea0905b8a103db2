"""Density previews: patch coverage per bin and where expansion still has work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FormatError
from ...figure import Axis, ColorBar, compose, save_png
from ...formats.overlaps import TGT_OVERLAP_COUNT, link_sets
from ...formats.tifxyz import read_surface
from ...formats.volpkg import list_patches, open_volpkg, state_dir
from ...formats.volume import Volume
from ...kernels.points import valid_mask
from ..coverage import below_target, collection_stats
from .common import _densify, _legend, heat


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
    """Render :func:`render_density` to the PNG ``out``; returns its layout."""
    img, layout = render_density(volpkg, **kw)
    save_png(img, Path(out), layout)
    return layout


def density_preview(volpkg, out=None, tgt: int | None = None) -> tuple[Path, float]:
    """Write a density preview; returns ``(png, share of patches below target)`` — the scheduler's
    measure (``1 - density`` of :func:`vcd.post.coverage.collection_stats`)."""
    out = Path(out or state_dir(volpkg) / "previews" / "density.png")
    st = preview_density(volpkg, out, tgt=tgt)["stats"]
    return out, st["below_target_fraction"]
