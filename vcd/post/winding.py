r"""Relative winding numbers of a trace (``vc_tifxyz_winding``), from the surface alone.

Along a grid row (fixed z), the trace follows the sheet around the scroll. The direction of the
row's tangent in the xy plane turns by :math:`2\pi` per wrap, so the relative winding at column
``c`` is the accumulated turning angle

.. math:: w(r, c) = \frac{1}{2\pi} \sum_{k < c} \operatorname{wrap}_{(-\pi, \pi]}\big(\varphi_{k+1} - \varphi_k\big),
          \qquad \varphi_k = \operatorname{atan2}(\Delta y_k, \Delta x_k)

where :math:`(\Delta x_k, \Delta y_k)` is the step between consecutive valid points of the row.
Invalid (masked) runs are bridged by the chord across the gap, so a masked hole does not break the
count. Rows are then shifted onto a common zero (the best-covered column), a per-column median
across rows removes row noise, and an isotonic (non-decreasing) fit removes the small back-turns
that waviness adds to the tangent angle. Unlike the C++ tool this needs no minimum
number of wraps and no centre/umbilicus, and it writes beside the trace (not into the CWD).

Output: ``winding.tif`` (float32, grid size, 0 where invalid, as VC3D), ``winding_vis.tif``
(RGB rainbow), ``winding.png`` (the rainbow enlarged to a readable size, with axes, a colour bar and
a title); +1 per wrap toward increasing column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..figure import Axis, ColorBar, compose, save_png, upscale
from ..formats.tifxyz import read_surface
from ..kernels.points import valid_mask


def row_turning(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Accumulated turning (turns) along each row; NaN where invalid."""
    R, C = valid.shape
    w = np.full((R, C), np.nan)
    for r in range(R):
        idx = np.nonzero(valid[r])[0]
        if len(idx) < 3:
            continue
        p = points[r, idx, :2].astype(np.float64)
        d = np.diff(p, axis=0)
        phi = np.arctan2(d[:, 1], d[:, 0])
        dphi = np.angle(np.exp(1j * np.diff(phi)))
        acc = np.concatenate([[0.0, 0.0], np.cumsum(dphi)]) / (2 * math.pi)
        w[r, idx] = acc
    return w


def winding_map(points: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Relative winding (turns, float) per grid point; NaN where invalid (see module docstring)."""
    if valid is None:
        valid = valid_mask(points)
    w = row_turning(points, valid)
    ok = ~np.isnan(w)
    if not ok.any():
        return w
    # +1 per wrap toward increasing column, whichever way the sheet turns
    ends = [w[r, np.nonzero(ok[r])[0][-1]] for r in range(w.shape[0]) if ok[r].any()]
    if np.median(ends) < 0:
        w = -w
    # align rows: shift each row so that it agrees with the others where they overlap
    ref_col = int(np.argmax(ok.sum(0)))
    ref_rows = ok[:, ref_col]
    for r in range(w.shape[0]):
        if not ok[r].any():
            continue
        if ref_rows[r]:
            w[r] -= w[r, ref_col]
        else:
            common = ok[r] & ok[ref_rows].any(0)
            if common.any():
                colmed = np.nanmedian(np.where(ok[ref_rows], w[ref_rows] - w[ref_rows][:, [ref_col]], np.nan), axis=0)
                w[r] -= np.nanmedian(w[r, common] - colmed[common])
    # median over rows per column removes row noise (rows of one trace share columns), and an
    # isotonic fit removes the small back-turns that waviness puts into the tangent angle
    med = np.nanmedian(np.where(ok, w, np.nan), axis=0)
    cols = np.nonzero(~np.isnan(med))[0]
    iso = np.full(med.shape, np.nan)
    iso[cols] = isotonic_increasing(med[cols])
    w = np.where(ok, iso[None, :] + 0 * w, np.nan)
    return w - np.nanmin(w)


def isotonic_increasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    vals, wts, counts = [], [], []
    for v in y:
        vals.append(float(v))
        wts.append(1.0)
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), counts.pop()
            v1, w1, c1 = vals.pop(), wts.pop(), counts.pop()
            vals.append((v1 * w1 + v2 * w2) / (w1 + w2))
            wts.append(w1 + w2)
            counts.append(c1 + c2)
    return np.repeat(vals, counts)


def rainbow(w: np.ndarray) -> np.ndarray:
    """RGB uint8 rainbow of ``w`` (NaN black), hue wrapping once per turn."""
    h = np.mod(np.nan_to_num(w), 1.0)
    rgb = np.stack([np.clip(np.abs(h * 6 - 3) - 1, 0, 1), np.clip(2 - np.abs(h * 6 - 2), 0, 1),
                    np.clip(2 - np.abs(h * 6 - 4), 0, 1)], -1)
    rgb = (rgb * 255).astype(np.uint8)
    rgb[np.isnan(w)] = 0
    return rgb


def write_png(w: np.ndarray, path) -> dict:
    """``winding.png``: :func:`rainbow` of ``w`` (turns) enlarged (nearest neighbour) to at least
    :data:`vcd.figure.MIN_WIDTH` pixels wide, with axes in grid points, a colour bar (one hue cycle
    per turn) and a title naming the trace; written atomically. Returns the figure layout."""
    path = Path(path)
    big, k = upscale(rainbow(w))
    span = float(np.nanmax(w) - np.nanmin(w)) if (~np.isnan(w)).any() else 0.0
    fig, layout = compose(
        Image.fromarray(big, "RGB"), f"Relative winding of {path.parent.name}",
        x=Axis("column (grid points)", -0.5, w.shape[1] - 0.5), y=Axis("row (grid points)", -0.5, w.shape[0] - 0.5),
        colorbars=[ColorBar(rainbow, 0.0, 1.0, "winding mod 1 (turns; the hue repeats every turn; black = no point)",
                            ticks=[0, 0.25, 0.5, 0.75, 1.0])],
        subtitle=f"span {span:.2f} wraps, +1 per wrap toward increasing column")
    layout.update(kind="winding", pixels_per_point=k, shape=list(w.shape))
    save_png(fig, path, layout)
    return layout


def write_winding(trace_dir: str | Path) -> dict:
    """Compute and write ``winding.tif``, ``winding_vis.tif`` and ``winding.png`` into the trace dir."""
    trace_dir = Path(trace_dir)
    s = read_surface(trace_dir)
    w = winding_map(s.points, s.valid)
    tifffile.imwrite(trace_dir / "winding.tif", np.nan_to_num(w, nan=0.0).astype(np.float32))
    vis = rainbow(w)
    tifffile.imwrite(trace_dir / "winding_vis.tif", vis, compression="lzw", photometric="rgb")
    ok = ~np.isnan(w)
    write_png(w, trace_dir / "winding.png")
    return {"trace": trace_dir.name, "span_wraps": float(np.nanmax(w) - np.nanmin(w)) if ok.any() else 0.0,
            "points": int(ok.sum())}
