r"""Render a surface into layer images (``vc_render_tifxyz VOL OUT_PATTERN SEGMENT SCALE GROUP LAYERS``),
following VC3D's rules so that the same arguments give the same images:

* **Size.** ``render_scale = SCALE · 2^-GROUP`` output pixels per level-0 voxel; the image is
  ``W = lround(cols · render_scale / sx)`` × ``H = lround(rows · render_scale / sy)`` (``sx, sy`` the
  tifxyz ``scale``: grid steps per voxel).
* **Pixel → grid.** The canvas is centred on the grid: pixel ``(i, j)`` (column, row) sits at grid
  ``(cols/2 + (i - (W-1)/2) · sx/render_scale, rows/2 + (j - (H-1)/2) · sy/render_scale)``. Its point
  ``P`` is bilinear in the grid (borders replicated); it is on the surface if the nearest vertex is valid.
* **Normals.** ``N = ŷ × x̂`` of the central differences one grid step either side of the pixel's grid
  location; then one global flip: on the probe tile (the canvas' top-left 128² pixels), if most
  normals point away from the centroid of that tile's points, every normal is negated.
* **Layers.** Layer ``k`` of ``n`` samples level ``GROUP`` trilinearly at
  ``(P + (k - (n-1)/2) N) / 2^GROUP`` (offsets in level-0 voxels); values truncate to uint8; pixels
  off the surface or without a normal read 0.

Positions and normals are computed once per tile row and all layers sampled from them; each layer is a
uint8 tiled (128²) LZW BigTIFF fed tile by tile to its own writer thread — never a whole layer in
memory. Layers are split across a process pool. A PNG preview of the centre layer is written next to
the first layer.
"""

from __future__ import annotations

import math
import os
import signal
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


def _lround(x: float) -> int:
    """C's ``lround`` for x >= 0 (halves away from zero; Python's ``round`` rounds them to even)."""
    return int(math.floor(x + 0.5))


def output_shape(surf, scale: float, group: int) -> tuple[int, int, float]:
    """``(H, W, render_scale)`` as VC3D sizes its canvas: ``W = lround(cols · render_scale / sx)``,
    ``render_scale = SCALE · 2^-GROUP`` (output pixels per level-0 voxel)."""
    sx, sy = surf.scale
    render_scale = scale * 2.0 ** -group
    rows, cols = surf.shape
    return max(1, _lround(rows * render_scale / sy)), max(1, _lround(cols * render_scale / sx)), render_scale


def pixel_to_grid(surf_shape, surf_scale, render_scale: float, H: int, W: int, ys: np.ndarray, xs: np.ndarray):
    """Grid coordinates ``(gy, gx)`` (float, grid rows/cols) of output pixels ``(ys, xs)``.

    VC3D centres the canvas on the grid: pixel ``(W-1)/2`` sits at grid column ``cols/2`` and one pixel
    is ``sx / render_scale`` grid columns (likewise for rows)."""
    rows, cols = surf_shape
    sx, sy = surf_scale
    gx = cols / 2.0 + (np.asarray(xs, np.float64) - (W - 1) / 2.0) * (sx / render_scale)
    gy = rows / 2.0 + (np.asarray(ys, np.float64) - (H - 1) / 2.0) * (sy / render_scale)
    return gy, gx


def _bilinear_nan(pn: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Bilinear ``pn`` (``[rows, cols, 3]``, NaN = invalid) at float grid coords, borders replicated; NaN if
    any of the four corners is invalid."""
    rows, cols = pn.shape[:2]
    y0, x0 = np.floor(gy), np.floor(gx)
    fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    ya, yb = np.clip(y0, 0, rows - 1), np.clip(y0 + 1, 0, rows - 1)
    xa, xb = np.clip(x0, 0, cols - 1), np.clip(x0 + 1, 0, cols - 1)
    return (pn[ya, xa] * (1 - fy) * (1 - fx) + pn[ya, xb] * (1 - fy) * fx +
            pn[yb, xa] * fy * (1 - fx) + pn[yb, xb] * fy * fx)


def _normed(v: np.ndarray) -> np.ndarray:
    L = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(L > 0, L, np.nan)


def central_differences(pn: np.ndarray) -> np.ndarray:
    """``[rows, cols, 6]``: ``p[y, x+1] - p[y, x-1]`` and ``p[y+1, x] - p[y-1, x]`` (NaN at the border).

    Bilinear interpolation is linear, so interpolating these at ``(y, x)`` equals VC3D's difference of
    two interpolated points one grid step either side — at a third of the cost."""
    d = np.full(pn.shape[:2] + (6,), np.nan)
    d[:, 1:-1, :3] = pn[:, 2:] - pn[:, :-2]
    d[1:-1, :, 3:] = pn[2:] - pn[:-2]
    return d


def surface_at(pn: np.ndarray, diffs: np.ndarray, gy: np.ndarray, gx: np.ndarray):
    """Points and unit normals (x, y, z; level-0 voxels) at float grid coords, as VC3D's ``QuadSurface::gen``:
    a pixel is on the surface if its nearest vertex is valid; the normal is ``ŷ × x̂`` of the central
    differences one grid step either side (location kept 1 vertex inside the grid; every probe's cell
    must lie in ``[0, cols-2) × [0, rows-2)``, so no normal within 3 vertices of the last row/column);
    NaN where undefined. ``diffs`` is :func:`central_differences` of ``pn``."""
    rows, cols = pn.shape[:2]
    P = _bilinear_nan(pn, gy, gx)
    ny, nx = np.floor(gy + 0.5).astype(np.int64), np.floor(gx + 0.5).astype(np.int64)
    inside = (ny >= 0) & (ny < rows) & (nx >= 0) & (nx < cols)
    ok = np.zeros(gy.shape, bool)
    ok[inside] = ~np.isnan(pn[ny[inside], nx[inside], 0])
    P[~ok] = np.nan
    cy = np.minimum(np.maximum(gy, 1), rows - 3)  # VC3D's order: max first, then min
    cx = np.minimum(np.maximum(gx, 1), cols - 3)
    D = _bilinear_nan(diffs, cy, cx)
    N = _normed(np.cross(_normed(D[..., 3:]), _normed(D[..., :3])))
    for dy, dx in ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)):
        iy, ix = np.floor(cy + dy), np.floor(cx + dx)
        ok &= (iy >= 0) & (iy < rows - 2) & (ix >= 0) & (ix < cols - 2)
    N[~ok] = np.nan
    return P, N


def flip_normals(P: np.ndarray, N: np.ndarray) -> bool:
    """VC3D's one global orientation rule, applied to the probe tile (the canvas' top-left 128² pixels):
    flip every normal if most of the tile's normals point away from the centroid of the tile's points."""
    ok = ~np.isnan(P).any(-1)
    if not ok.any():
        return False
    centroid = P[ok].mean(0)
    both = ok & ~np.isnan(N).any(-1)
    dots = np.einsum("...k,...k->...", centroid - P[both], N[both])
    toward = int((dots > 0).sum())
    return len(dots) - toward > toward


class RenderGeometry:
    """Where each output pixel of one surface samples: ``tile(ys, xs) -> (P, N)`` with VC3D's size, canvas
    centring and normal orientation (see the module docstring)."""

    def __init__(self, surf, scale: float, group: int):
        self.pn = np.where(surf.valid[..., None], surf.points, np.nan).astype(np.float64)
        self.diffs = central_differences(self.pn)
        self.H, self.W, self.render_scale = output_shape(surf, scale, group)
        self.shape, self.scale = surf.shape, surf.scale
        ys, xs = np.arange(min(TILE, self.H)), np.arange(min(TILE, self.W))
        self.flip = False
        self.flip = flip_normals(*self.tile(ys, xs))

    def tile(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points and oriented unit normals ``[len(ys), len(xs), 3]`` (x, y, z; level-0 voxels; NaN off-surface)."""
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        gy, gx = pixel_to_grid(self.shape, self.scale, self.render_scale, self.H, self.W, yy, xx)
        P, N = surface_at(self.pn, self.diffs, gy, gx)
        return P, (-N if self.flip else N)


def render_layers(args, tick=None) -> list[str]:
    """Render several layers in one pass over the surface: positions and normals are computed once
    per tile row and each layer's tiles go to its own writer thread (tifffile, LZW), so no layer is
    ever held whole in memory. ``args = (segment, volume, [(out_path, offset), ...], scale, group)``;
    ``tick(rows_done, rows)`` after each tile row (output pixel rows)."""
    import queue as _queue
    import threading

    seg, vol, outs, scale, group = args
    geo = RenderGeometry(read_surface(seg), scale, group)
    H, W = geo.H, geo.W
    sampler = open_volume(vol).sampler(level=group, cache_bytes=2e8)
    f = 2.0 ** -group
    queues = [_queue.Queue(maxsize=4 * ((W + TILE - 1) // TILE)) for _ in outs]
    errors: list = []

    def writer(q, out_path):
        tmp = Path(out_path).with_name(f".{Path(out_path).name}.part")
        ended = False  # the producer's end marker (None) has been taken from q

        def tiles():
            nonlocal ended
            while (t := q.get()) is not None:
                yield t
            ended = True

        try:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp, tiles(), shape=(H, W), dtype=np.uint8, tile=(TILE, TILE), compression="lzw",
                             predictor=2, bigtiff=True)
            os.replace(tmp, out_path)
        except BaseException as exc:  # surfaced to the caller below (an interrupted layer is never renamed:
            errors.append(exc)        # its tiles stop short and tifffile raises)
            tmp.unlink(missing_ok=True)
            while not ended and q.get() is not None:  # let the producer finish
                pass
    threads = [threading.Thread(target=writer, args=(q, o), daemon=True) for q, (o, _) in zip(queues, outs)]
    for t in threads:
        t.start()
    try:
        for t0 in range(0, H, TILE):
            rows = np.arange(t0, min(H, t0 + TILE))
            P, N = geo.tile(rows, np.arange(W))
            ok = ~(np.isnan(P).any(-1) | np.isnan(N).any(-1))  # VC3D reads 0 where either is undefined
            Pk, Nk = P[ok], N[ok]
            for q, (_, offset) in zip(queues, outs):
                block = np.zeros((TILE, ((W + TILE - 1) // TILE) * TILE), np.uint8)
                if len(Pk):
                    sub = np.zeros(ok.shape, np.float32)
                    sub[ok] = sampler.sample((Pk + offset * Nk) * f)
                    block[:len(rows), :W] = np.clip(sub, 0, 255).astype(np.uint8)  # truncates, as VC3D
                for c0 in range(0, W, TILE):
                    q.put(block[:, c0:c0 + TILE].copy())
            if tick:
                tick(int(rows[-1]) + 1, H)
    finally:
        for q in queues:
            q.put(None)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return [str(o) for o, _ in outs]


_RENDERING = False  # in a pool worker: True while it writes layers


def _worker_sigint(signum, frame):
    """Ctrl-C reaches the pool workers too (the terminal signals the whole process group): a worker
    writing layers stops them (their ``.part`` files are removed) and reports back; an idle one ignores
    it (instead of printing multiprocessing's traceback) and exits when the interrupted parent shuts
    the pool down."""
    if _RENDERING:
        raise KeyboardInterrupt


def _init_worker() -> None:
    signal.signal(signal.SIGINT, _worker_sigint)


def _render_layers_in_worker(args) -> list[str]:
    global _RENDERING
    _RENDERING = True
    try:
        return render_layers(args)
    finally:
        _RENDERING = False


def _abandon_pool(ex: ProcessPoolExecutor, paths: list[Path], grace_s: float = 30.0) -> None:
    """After an error or Ctrl-C in the parent: cancel the pool's pending work, give its workers
    ``grace_s`` seconds to end (a Ctrl-C reaches them too; a worker writing layers removes its
    ``.part`` files), end the rest, then remove any ``.part`` file left. The parent never waits on an
    interrupted pool shutdown (at interpreter exit that wait could hang after ``interrupted``)."""
    import multiprocessing as mp
    ex.shutdown(wait=False, cancel_futures=True)
    workers = mp.active_children()
    for w in workers:
        w.join(grace_s / max(len(workers), 1))
    for w in workers:
        if w.is_alive():
            w.kill()
            w.join()
    for p in paths:
        Path(p).with_name(f".{Path(p).name}.part").unlink(missing_ok=True)


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
        tick = (lambda r, h: progress(0.99 * r / h, f"{r}/{h} rows of {layers} layers")) if progress else None
        done = len(render_layers(jobs[0], tick))
    else:
        import multiprocessing as mp
        ex = ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn"), initializer=_init_worker)
        try:
            for written in ex.map(_render_layers_in_worker, jobs):
                done += len(written)
                if progress:
                    progress(done / layers, f"{done}/{layers} layers")
            ex.shutdown()
        except BaseException:  # also a Ctrl-C that lands while the finished pool shuts down
            _abandon_pool(ex, paths)
            raise
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
