"""``traces/autoseg_report.png``: what autoseg covered, where it stopped, and the params it chose.

Three panels side by side (PIL only, :mod:`vcd.figure`):

1. **Coverage map of the predicted surface**, unrolled around the collection's axis: every sample
   of the predicted surface (or, without samples, every patch point) ``(x, y, z)`` (level-0 voxels)
   goes to the pixel ``(θ, z)``, ``θ = atan2(y - c_y, x - c_x)``
   about the xy centroid ``c`` of all patch points. A pixel is green where its points lie on a final
   sheet's kept area (within ``tol`` voxels), orange where they lie only on area the QA gate cut, red
   where on neither (uncovered); mixed pixels blend by share. Wraps overlap in this view; it shows
   *where around the scroll* coverage is missing.
2. **Slices** of the prediction at three heights (``z`` = 1/4, 1/2, 3/4 of the volume), grey, with
   the final sheets' points within 0.75 voxel of each slice drawn in one colour per sheet.
3. **The params autoseg chose** and the measurement behind each (:func:`vcd.jobs.autoconf.plan_lines`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..figure import BG, FG, font, save_png

#: pixels of the coverage map (θ across, z down) and of each slice's longer side
MAP_W, MAP_H = 96, 64
SLICE = 240
SHEET_COLOURS = [(80, 200, 255), (255, 220, 60), (255, 90, 200), (120, 255, 120), (255, 140, 60), (180, 140, 255)]


def coverage_map(points: np.ndarray, state: np.ndarray, z_extent: float) -> np.ndarray:
    """RGB ``[MAP_H, MAP_W, 3]`` of patch ``points`` (N×3 ``(x, y, z)``) coloured by ``state`` (N ints:
    0 uncovered, 1 covered by a final sheet, 2 only on QA-cut area); ``z_extent`` the volume's z size."""
    img = np.zeros((MAP_H, MAP_W, 3), np.float64)
    if not len(points):
        return img.astype(np.uint8)
    c = points[:, :2].mean(axis=0)
    theta = np.arctan2(points[:, 1] - c[1], points[:, 0] - c[0])
    u = np.clip(((theta + np.pi) / (2 * np.pi) * MAP_W).astype(int), 0, MAP_W - 1)
    v = np.clip((points[:, 2] / max(z_extent, 1.0) * MAP_H).astype(int), 0, MAP_H - 1)
    colours = np.array([(220, 50, 50), (60, 200, 90), (255, 150, 40)], np.float64)
    count = np.zeros((MAP_H, MAP_W))
    np.add.at(count, (v, u), 1)
    for k in range(3):
        sel = state == k
        acc = np.zeros((MAP_H, MAP_W))
        np.add.at(acc, (v[sel], u[sel]), 1)
        img += (acc / np.maximum(count, 1))[..., None] * colours[k]
    img[count == 0] = (40, 40, 40)
    return img.astype(np.uint8)


def slice_panel(vol, z: int, sheets: list[np.ndarray]) -> np.ndarray:
    """RGB of the prediction's slice ``z`` (level 0, grey) with the points of each sheet in ``sheets``
    (N×3 ``(x, y, z)`` arrays) within 0.75 voxel of the slice drawn in that sheet's colour."""
    Z, Y, X = vol.shape
    img = vol.read_region_u8(z, z + 1, 0, Y, 0, X)[0]
    rgb = np.repeat((img // 2)[..., None], 3, axis=2).astype(np.uint8)
    for i, pts in enumerate(sheets):
        near = pts[np.abs(pts[:, 2] - z) <= 0.75]
        xi = np.clip(np.round(near[:, 0]).astype(int), 0, X - 1)
        yi = np.clip(np.round(near[:, 1]).astype(int), 0, Y - 1)
        rgb[yi, xi] = SHEET_COLOURS[i % len(SHEET_COLOURS)]
    f = max(1, SLICE // max(X, Y))
    return np.kron(rgb, np.ones((f, f, 1), np.uint8)) if f > 1 else rgb


def _fit(arr: np.ndarray, w: int, h: int) -> Image.Image:
    im = Image.fromarray(arr)
    s = min(w / im.width, h / im.height)
    return im.resize((max(1, int(im.width * s)), max(1, int(im.height * s))), Image.NEAREST)


def _ascii(text: str) -> str:
    """The default bitmap font has no µ, ², ³, θ: spelled out."""
    for a, b in (("µm", "um"), ("²", "2"), ("³", "3"), ("θ", "theta"), ("→", "->"), ("−", "-")):
        text = text.replace(a, b)
    return text


def report_figure(out: Path, points: np.ndarray, state: np.ndarray, vol, sheets: list[np.ndarray],
                  lines: list[str], title: str) -> Path:
    """Write the three-panel PNG to ``out`` (atomically) and return it."""
    fnt, big = font(12), font(15)
    Z = vol.shape[0] if vol is not None else (float(points[:, 2].max()) + 1 if len(points) else 1.0)
    cov = _fit(coverage_map(points, state, Z), 540, 360)
    slices = [_fit(slice_panel(vol, int(f * vol.shape[0]), sheets), SLICE, SLICE)
              for f in (0.25, 0.5, 0.75)] if vol is not None else []
    text_w = 560
    width = 20 + cov.width + 20 + (SLICE + 10) * len(slices) + 20 + text_w
    height = 60 + max(cov.height + 60, SLICE + 60, 16 * len(lines) + 20)
    fig = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(fig)
    d.text((20, 12), _ascii(title), fill=FG, font=big)
    d.text((20, 40), "coverage of the predicted surface (angle around the axis ->, z down)", fill=FG, font=fnt)
    fig.paste(cov, (20, 60))
    y = 60 + cov.height + 8
    for label, col in (("on a final sheet", (60, 200, 90)), ("cut by QA", (255, 150, 40)), ("uncovered", (220, 50, 50))):
        d.rectangle([20, y, 32, y + 12], fill=col)
        d.text((38, y), label, fill=FG, font=fnt)
        y += 16
    x = 20 + cov.width + 20
    d.text((x, 40), "prediction slices z = 1/4, 1/2, 3/4 with the final sheets", fill=FG, font=fnt)
    for im in slices:
        fig.paste(im, (x, 60))
        x += SLICE + 10
    x += 10
    d.text((x, 40), "params autoseg chose", fill=FG, font=fnt)
    for i, line in enumerate(lines):
        d.text((x, 60 + 16 * i), _ascii(line)[:90], fill=FG, font=fnt)
    return save_png(fig, out)
