r"""Render a surface into layer images (``vc_render_tifxyz VOL OUT_PATTERN SEGMENT SCALE GROUP LAYERS``).

Output pixel ``(i, j)`` sits at grid coordinates ``(i, j) · s · sx`` (``s`` = pixel spacing in
level-0 voxels ``= 2^GROUP / SCALE``); its point ``P`` and unit normal ``N`` are bilinear in the
grid. Layer ``k`` of ``n`` samples level ``GROUP`` of the volume trilinearly at

.. math:: \big(P + (k - \tfrac{n-1}{2})\,N\big) / 2^{\text{GROUP}}

(offsets in level-0 voxels, as VC3D). Positions and normals are computed once per tile row and all
layers sampled from them; each layer is a uint8 tiled (128²) LZW BigTIFF fed tile by tile to its own
writer thread — never a whole layer in memory. Layers are split across a process pool. A PNG preview of the centre layer is written next to the first layer.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..errors import InputError
from ..formats.tifxyz import read_surface
from ..formats.volume import open_volume

TILE = 128


def grid_normals(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unit normals (central differences, one-sided at edges) of a ``[rows, cols, 3]`` grid."""
    p = np.where(valid[..., None], points, np.nan).astype(np.float64)
    dr = np.full(p.shape, np.nan)
    dc = np.full(p.shape, np.nan)
    dr[1:-1] = p[2:] - p[:-2]
    dr[0], dr[-1] = p[1] - p[0], p[-1] - p[-2]
    dc[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dc[:, 0], dc[:, -1] = p[:, 1] - p[:, 0], p[:, -1] - p[:, -2]
    # fall back to one-sided differences next to holes
    fr = np.where(np.isnan(dr), np.concatenate([p[1:] - p[:-1], np.full((1,) + p.shape[1:], np.nan)]), dr)
    fc = np.where(np.isnan(dc), np.concatenate([p[:, 1:] - p[:, :-1], np.full((p.shape[0], 1, 3), np.nan)], 1), dc)
    n = np.cross(fc, fr)
    L = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.where(L > 0, L, np.nan)
    return np.nan_to_num(n)


def _bilinear(a: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    r0 = np.clip(np.floor(rr).astype(np.int64), 0, a.shape[0] - 2)
    c0 = np.clip(np.floor(cc).astype(np.int64), 0, a.shape[1] - 2)
    fr, fc = (rr - r0)[..., None], (cc - c0)[..., None]
    return (a[r0, c0] * (1 - fr) * (1 - fc) + a[r0, c0 + 1] * (1 - fr) * fc +
            a[r0 + 1, c0] * fr * (1 - fc) + a[r0 + 1, c0 + 1] * fr * fc)


def output_shape(surf, scale: float, group: int) -> tuple[int, int, float]:
    sx, sy = surf.scale
    spacing = 2.0 ** group / scale
    rows, cols = surf.shape
    return int((rows - 1) / sy / spacing) + 1, int((cols - 1) / sx / spacing) + 1, spacing


def render_layers(args) -> list[str]:
    """Render several layers in one pass over the surface: positions and normals are computed once
    per tile row and each layer's tiles go to its own writer thread (tifffile, LZW), so no layer is
    ever held whole in memory. ``args = (segment, volume, [(out_path, offset), ...], scale, group)``."""
    import queue as _queue
    import threading

    seg, vol, outs, scale, group = args
    surf = read_surface(seg)
    sx, sy = surf.scale
    H, W, spacing = output_shape(surf, scale, group)
    valid = surf.valid
    normals = grid_normals(surf.points, valid)
    pts = np.where(valid[..., None], surf.points, 0).astype(np.float64)
    vmask = valid.astype(np.float64)
    sampler = open_volume(vol).sampler(level=group, cache_bytes=2e8)
    f = 2.0 ** -group
    queues = [_queue.Queue(maxsize=4 * ((W + TILE - 1) // TILE)) for _ in outs]
    errors: list = []

    def tiles(q):
        while True:
            t = q.get()
            if t is None:
                return
            yield t

    def writer(q, out_path):
        try:
            tmp = Path(out_path).with_name(f".{Path(out_path).name}.part")
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp, tiles(q), shape=(H, W), dtype=np.uint8, tile=(TILE, TILE), compression="lzw",
                             predictor=2, bigtiff=True)
            os.replace(tmp, out_path)
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            while q.get() is not None:
                pass
    threads = [threading.Thread(target=writer, args=(q, o), daemon=True) for q, (o, _) in zip(queues, outs)]
    for t in threads:
        t.start()
    try:
        for t0 in range(0, H, TILE):
            rows = np.arange(t0, min(H, t0 + TILE))
            rr = (rows * spacing * sy)[:, None] * np.ones((1, W))
            cc = np.ones((len(rows), 1)) * (np.arange(W) * spacing * sx)[None, :]
            P = _bilinear(pts, rr, cc)
            N = _bilinear(normals, rr, cc)
            ok = _bilinear(vmask[..., None], rr, cc)[..., 0] > 0.999
            Pk, Nk = P[ok], N[ok]
            for q, (_, offset) in zip(queues, outs):
                block = np.zeros((TILE, ((W + TILE - 1) // TILE) * TILE), np.uint8)
                if len(Pk):
                    sub = np.zeros(ok.shape, np.float32)
                    sub[ok] = sampler.sample((Pk + offset * Nk) * f)
                    block[:len(rows), :W] = np.clip(np.round(sub), 0, 255).astype(np.uint8)
                for c0 in range(0, W, TILE):
                    q.put(block[:, c0:c0 + TILE].copy())
    finally:
        for q in queues:
            q.put(None)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return [str(o) for o, _ in outs]


def layer_paths(out_pattern: str, n: int) -> list[Path]:
    """Paths from a printf pattern (``out/%02d.tif``) or a directory (``out/``: 2-digit names)."""
    if "%" in out_pattern:
        return [Path(out_pattern % i) for i in range(n)]
    return [Path(out_pattern) / f"{i:02d}.tif" for i in range(n)]


def render(volume: str | os.PathLike, out_pattern: str, segment: str | os.PathLike, scale: float = 1.0,
           group: int = 0, layers: int = 21, processes: int | None = None, progress=None) -> dict:
    """Render ``layers`` layers; returns the written paths and the preview path."""
    vol = open_volume(volume)
    if group >= len(vol.levels):
        raise InputError(volume, f"volume has no level {group}", f"use a GROUP below {len(vol.levels)}")
    if layers < 1 or scale <= 0:
        raise InputError(None, "LAYERS must be >= 1 and SCALE > 0", "e.g. 0.5 1 21")
    read_surface(segment)  # validate before spawning workers
    paths = layer_paths(out_pattern, layers)
    offsets = [k - (layers - 1) / 2.0 for k in range(layers)]
    H, W, _ = output_shape(read_surface(segment), scale, group)
    if processes is None:  # processes pay ~1 s start-up each: only for big renders
        processes = 1 if H * W * layers < 4e6 else (os.cpu_count() or 1)
    procs = max(1, min(processes, layers))
    groups = [list(zip(map(str, paths), offsets))[i::procs] for i in range(procs)]
    jobs = [(str(segment), str(volume), g, float(scale), int(group)) for g in groups if g]
    done = 0
    if len(jobs) == 1:
        done = len(render_layers(jobs[0]))
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as ex:
            for written in ex.map(render_layers, jobs):
                done += len(written)
                if progress:
                    progress(done / layers, f"{done}/{layers} layers")
    if progress:
        progress(1.0, f"{done}/{layers} layers")
    centre = paths[(layers - 1) // 2]
    preview = centre.with_name("preview.png")
    img = tifffile.imread(centre)
    im = Image.fromarray(img)
    if max(im.size) > 1024:
        im.thumbnail((1024, 1024))
    im.save(preview)
    return {"layers": [str(p) for p in paths], "preview": str(preview), "shape": list(img.shape)}
