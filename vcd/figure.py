"""Readable PNG figures with PIL only: a plot image framed with a title, axes with ticks in data
units, horizontal colour bars with units, and a legend — used by the previews (:mod:`vcd.post.preview`),
the trace QA map (:mod:`vcd.trace.qa`) and the winding map (:mod:`vcd.post.winding`).

Here (not under ``post/``) so that ``trace/`` and ``post/`` can both use it; it imports nothing of vcd.

Axis convention: ``Axis(label, v0, v1)`` maps the plot's left (top) pixel *edge* to ``v0`` and its
right (bottom) edge to ``v1``, linearly; e.g. a level-0 voxel ``c`` drawn at pixel
``(c + 0.5) * f - 0.5`` has ``v0 = -0.5`` and ``v1 = width / f - 0.5``.
:func:`compose` returns the figure and a layout (``plot_box``, ``title_box``, ``colorbars`` with
their boxes and ranges, ``legend_box``; boxes are ``[x0, y0, width, height]`` pixels).
PNGs are written atomically (temp file + rename, :func:`save_png`).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

BG = (20, 20, 20)
FG = (235, 235, 235)
MIN_WIDTH = 600   #: a figure's plot is enlarged (nearest neighbour) to at least this many pixels wide


def font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def text_wh(text: str, fnt) -> tuple[int, int]:
    x0, y0, x1, y1 = fnt.getbbox(text)
    return int(x1 - min(0, x0)), int(y1 - min(0, y0))


def nice_ticks(v0: float, v1: float, max_ticks: int = 6) -> list[float]:
    """Round values (1, 2 or 5 × 10^k apart) inside ``[min(v0, v1), max(v0, v1)]``."""
    lo, hi = min(v0, v1), max(v0, v1)
    span = hi - lo
    if not span > 0 or not math.isfinite(span):
        return [lo]
    raw = span / (max_ticks + 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    n = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(max(0, n))]


def fmt_tick(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def upscale(rgb: np.ndarray, min_width: int = MIN_WIDTH, max_factor: int = 64) -> tuple[np.ndarray, int]:
    """Nearest-neighbour enlargement by the smallest integer ``k`` (≤ ``max_factor``) that makes the
    image at least ``min_width`` pixels wide; returns ``(image, k)``."""
    k = int(min(max_factor, max(1, math.ceil(min_width / max(1, rgb.shape[1])))))
    return np.repeat(np.repeat(rgb, k, 0), k, 1), k


@dataclass
class Axis:
    label: str
    v0: float   #: value at the plot's left / top pixel edge
    v1: float   #: value at the right / bottom pixel edge


@dataclass
class ColorBar:
    cmap: Callable[[np.ndarray], np.ndarray]   #: values -> uint8 RGB [..., 3]
    v0: float
    v1: float
    label: str                                 #: what and in which units, e.g. "patches per bin"
    ticks: list | None = None                  #: tick values (default: :func:`nice_ticks`)
    tick_labels: list | None = None


def _colorbar_image(cb: ColorBar, length: int, fnt) -> Image.Image:
    bar_h, tick_h = 14, 4
    lw, lh = text_wh(cb.label, fnt)
    h = bar_h + tick_h + 14 + lh + 6
    im = Image.new("RGB", (max(length, lw) + 24, h), BG)
    vals = cb.v0 + (np.arange(length) + 0.5) / length * (cb.v1 - cb.v0)
    row = np.asarray(cb.cmap(vals), np.uint8).reshape(length, 3)
    im.paste(Image.fromarray(np.ascontiguousarray(np.repeat(row[None], bar_h, 0)), "RGB"), (12, 0))
    d = ImageDraw.Draw(im)
    ticks = cb.ticks if cb.ticks is not None else nice_ticks(cb.v0, cb.v1)
    labels = cb.tick_labels or [fmt_tick(t) for t in ticks]
    for t, s in zip(ticks, labels):
        if cb.v1 == cb.v0:
            continue
        x = 12 + (t - cb.v0) / (cb.v1 - cb.v0) * (length - 1)
        d.line([(x, bar_h), (x, bar_h + tick_h)], fill=FG)
        tw, _ = text_wh(s, fnt)
        d.text((min(max(0, x - tw / 2), im.width - tw), bar_h + tick_h + 1), s, fill=FG, font=fnt)
    d.text((12, bar_h + tick_h + 15), cb.label, fill=FG, font=fnt)
    return im


def _ylabel_image(text: str, fnt) -> Image.Image:
    w, h = text_wh(text, fnt)
    im = Image.new("RGB", (w + 2, h + 2), BG)
    ImageDraw.Draw(im).text((1, 0), text, fill=FG, font=fnt)
    return im.rotate(90, expand=True)


def compose(plot: Image.Image, title: str, x: Axis | None = None, y: Axis | None = None,
            colorbars: list[ColorBar] = (), legend: Image.Image | None = None,
            subtitle: str = "") -> tuple[Image.Image, dict]:
    """``plot`` framed: title (and subtitle) on top, axes with ticks left and below, colour bars and
    the legend underneath. Returns ``(figure, layout)`` (see the module docstring)."""
    fnt, tfnt = font(12), font(15)
    W, H = plot.size
    yl = _ylabel_image(y.label, fnt) if y else None
    y_above = yl is not None and yl.height > H      # a flat plot: the y label goes above it, unrotated
    if y_above:
        yl = None
    yticks = [(v, fmt_tick(v)) for v in nice_ticks(y.v0, y.v1, max(2, min(6, H // 28)))] if y else []
    left = 8 + (yl.width + 4 if yl else 0) + max([text_wh(s, fnt)[0] for _, s in yticks] or [0]) + (8 if y else 0)
    th = text_wh(title, tfnt)[1] + 10
    sh = text_wh(subtitle, fnt)[1] + 6 if subtitle else 0
    top = 6 + th + sh + 4 + (text_wh(y.label, fnt)[1] + 6 if y_above else 0)
    bottom = (6 + 14 + text_wh(x.label, fnt)[1] + 8) if x else 6
    bars = [_colorbar_image(cb, max(200, min(W, 480)), fnt) for cb in colorbars]
    width = max(left + W + 24, text_wh(title, tfnt)[0] + 16, text_wh(subtitle, fnt)[0] + 16,
                *(b.width + left for b in bars), legend.width if legend is not None else 0)
    height = top + H + bottom + sum(b.height + 4 for b in bars) + (legend.height + 4 if legend is not None else 0)
    im = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(im)
    d.text((8, 6), title, fill=FG, font=tfnt)
    if subtitle:
        d.text((8, 6 + th), subtitle, fill=(200, 200, 200), font=fnt)
    im.paste(plot, (left, top))
    d.rectangle([left - 1, top - 1, left + W, top + H], outline=(120, 120, 120))
    if x:
        for v in nice_ticks(x.v0, x.v1, max(2, min(8, W // 70))):
            px = left + (v - x.v0) / (x.v1 - x.v0) * W
            d.line([(px, top + H), (px, top + H + 4)], fill=FG)
            s = fmt_tick(v)
            tw, _ = text_wh(s, fnt)
            d.text((min(max(0, px - tw / 2), width - tw), top + H + 6), s, fill=FG, font=fnt)
        lw, _ = text_wh(x.label, fnt)
        d.text((left + max(0, (W - lw) // 2), top + H + 22), x.label, fill=FG, font=fnt)
    if y:
        for v, s in yticks:
            py = top + (v - y.v0) / (y.v1 - y.v0) * H
            d.line([(left - 5, py), (left - 1, py)], fill=FG)
            tw, tth = text_wh(s, fnt)
            d.text((left - 7 - tw, py - tth / 2 - 1), s, fill=FG, font=fnt)
        if yl is not None:
            im.paste(yl, (6, top + max(0, (H - yl.height) // 2)))
        else:
            d.text((6, top - text_wh(y.label, fnt)[1] - 6), y.label, fill=FG, font=fnt)
    layout = {"plot_box": [left, top, W, H], "title_box": [0, 0, width, top - 4], "colorbars": []}
    yy = top + H + bottom
    for cb, b in zip(colorbars, bars):
        im.paste(b, (left - 12, yy))
        layout["colorbars"].append({"box": [left, yy, max(200, min(W, 480)), 14], "v0": cb.v0, "v1": cb.v1,
                                    "label": cb.label})
        yy += b.height + 4
    if legend is not None:
        im.paste(legend, (0, yy))
        layout["legend_box"] = [0, yy, legend.width, legend.height]
    return im, layout


def png_bytes(img: Image.Image, text: dict | None = None) -> bytes:
    """``img`` encoded as PNG; ``text`` goes into a ``vcd`` PNG text chunk as JSON."""
    info = PngInfo()
    if text is not None:
        info.add_text("vcd", json.dumps(text))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(img: Image.Image, out, text: dict | None = None) -> Path:
    """Write ``img`` to ``out`` atomically (temp file + rename); ``text`` goes into a ``vcd`` PNG
    text chunk as JSON."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(png_bytes(img, text))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
