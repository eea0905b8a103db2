"""Shared by the preview figures: colours, the volume a preview samples, the layout a PNG carries, legends."""

from __future__ import annotations

import colorsys
import hashlib
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from ...figure import font as _font
from ...formats.tifxyz import INVALID
from ...formats.volume import Volume
from ...kernels.points import valid_mask, valid_quads


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
