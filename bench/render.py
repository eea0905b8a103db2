"""Benchmark rendering: samples/s per core vs a memory-bandwidth bound measured here.

Run: ``python bench/render.py [--layers 21]``

The bound: the same number of trilinear samples taken with perfectly sequential, cache-friendly
access (sampling the same chunks in scan order), i.e. what the sampler costs when memory access is
free of misses; and a raw numpy copy of the same bytes (pure bandwidth). Render throughput is
reported per core (one process) and with all cores.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]


import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vcd.formats.tifxyz import write_surface
from vcd.formats.volume import open_volume
from vcd.kernels.sample import sample_chunked
from vcd.post.render import render
from vcd.synth import load_truth, make_scroll


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=21)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vp = make_scroll(tmp / "r.volpkg", shape=(192, 256, 256), preset="medium", seed=1)
        t = load_truth(vp)
        g = t.sample_grid(t.theta0 + 8, t.theta0 + 20, 5, 185, 4)
        seg = write_surface(tmp / "seg", g, {"scale": [0.25, 0.25]})
        vol = vp / "volumes" / "synth_ct.zarr"
        render(vol, str(tmp / "warm" / "%02d.tif"), seg, 1.0, 0, 1, processes=1)  # JIT warm-up
        for procs in (1, os.cpu_count() or 1):
            t0 = time.perf_counter()
            r = render(vol, str(tmp / f"o{procs}" / "%02d.tif"), seg, 2.0, 0, a.layers, processes=procs)
            dt = time.perf_counter() - t0
            n = r["shape"][0] * r["shape"][1] * a.layers
            print(f"render {a.layers} layers {r['shape'][1]}x{r['shape'][0]} px, {procs} process(es): "
                  f"{n / dt / 1e6:.2f} M samples/s ({n / dt / procs / 1e6:.2f} M/s per core), {dt:.2f} s")
        # bound: sampler alone on in-cache, sequential points (no I/O, no tiling, no TIFF encoding)
        s = open_volume(vol).sampler()
        z, y, x = np.meshgrid(np.arange(40, 140, 0.5), np.arange(60, 200, 0.5), np.arange(60, 200, 0.5), indexing="ij")
        pts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)[:2_000_000].copy()
        s.ensure_points(pts)
        sample_chunked(s.pool, s.slots, s.chunk_shape, s.shape, pts[:1000])
        t0 = time.perf_counter()
        sample_chunked(s.pool, s.slots, s.chunk_shape, s.shape, pts)
        dt = time.perf_counter() - t0
        print(f"bound: trilinear sampler on cached sequential points: {len(pts) / dt / 1e6:.2f} M samples/s per core")
        buf = np.random.default_rng(0).integers(0, 255, 256 * 2**20, dtype=np.uint8)
        dst = np.ones_like(buf)  # touched, so the copy measures bandwidth, not page faults
        np.copyto(dst, buf)
        t0 = time.perf_counter()
        np.copyto(dst, buf)
        dt = time.perf_counter() - t0
        print(f"memory bandwidth (numpy copy): {buf.nbytes / dt / 1e9:.1f} GB/s "
              f"= {buf.nbytes / dt / 8 / 1e6:.0f} M trilinear samples/s if 8 voxel reads per sample were the only cost")


if __name__ == "__main__":
    main()
