"""Benchmark patch growth and overlap linking.

Run: ``python bench/grow.py [--patches 10] [--link-sizes 1000 10000]`` (``--patches 0``: linking only)

Prints growth throughput in vx² of surface per CPU-second (single thread, after JIT warm-up) on a
medium synthetic scroll, the accuracy of those patches, and the time to link one new patch
against collections of 1k and 10k patches (bbox index held in memory, as the daemon does).
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

import numba
import numpy as np

from vcd.formats.tifxyz import write_surface
from vcd.formats.volume import open_volume
from vcd.grow.distance import DistanceField
from vcd.grow.grower import grow_patch
from vcd.grow.linking import PatchIndex, link_new_patch
from vcd.grow.seeding import random_seed_point
from vcd.synth import load_truth, make_scroll
from vcd.synth.score import score_surface


def bench_growth(tmp: Path, n: int, step: float, gens: int):
    vp = make_scroll(tmp / "medium.volpkg", shape=(160, 192, 192), preset="medium", seed=3, ct=False)
    t = load_truth(vp)
    vol = open_volume(vp / "volumes" / "synth_pred.zarr")
    field = DistanceField(vol.levels[0])
    field.ensure_all()
    rng = np.random.default_rng(0)
    pred = vol.sampler()
    grow_patch(field, random_seed_point(pred, rng), step, 3, rng=rng)  # JIT warm-up
    area = cpu = 0.0
    jumps, dists = [], []
    for _ in range(n):
        p = random_seed_point(pred, rng)
        c0 = time.process_time()
        r = grow_patch(field, p, step, gens, rng=rng)
        cpu += time.process_time() - c0
        area += r.area_vx2
        if r.n_corners:
            s = score_surface(r.points, t)
            jumps.append(s["jumps"])
            dists.append(s["mean_dist"])
    print(f"growth: {n} patches, step {step} vx, {gens} generations: {area:,.0f} vx² in {cpu:.2f} CPU-s "
          f"= {area / cpu:,.0f} vx²/CPU-s (single thread)")
    print(f"  accuracy: mean distance {np.mean(dists):.2f} vx, patches with sheet jumps: "
          f"{sum(j > 0 for j in jumps)}/{len(jumps)}")
    return t


def bench_linking(tmp: Path, truth, sizes):
    """Collections of ``size`` patches on a scroll scaled so each patch overlaps ~10-20 others (the
    density expansion aims for), like a real collection spread over a whole scroll."""
    from vcd.synth import build_truth
    rng = np.random.default_rng(1)
    for size in sizes:
        side = max(160, int(math.sqrt(size * 12)))
        truth = build_truth((side, side, side), "medium", seed=4)
        paths = tmp / f"paths{size}"
        paths.mkdir()
        Z = truth.shape[0]
        for i in range(size):
            th = rng.uniform(truth.theta0, truth.theta1 - 0.6)
            z0 = rng.uniform(0, Z - 25)
            g = truth.sample_grid(th, th + 0.5, z0, z0 + 20, 5)
            write_surface(paths / f"auto_grown_{i:017d}", g, {"scale": [0.2, 0.2], "source": "vcd_grow"})
        os.sync()  # flush the freshly written collection, so its writeback does not land in the timings
        t0 = time.perf_counter()
        index = PatchIndex(paths).refresh()
        for n in index.names:  # a long-running worker holds these in memory
            index.search(n)
        t_index = time.perf_counter() - t0
        times, links = [], []
        for j in range(20):
            th = rng.uniform(truth.theta0, truth.theta1 - 0.6)
            z0 = rng.uniform(0, Z - 25)
            name = f"auto_grown_9{j:016d}"
            write_surface(paths / name, truth.sample_grid(th, th + 0.5, z0, z0 + 20, 5),
                          {"scale": [0.2, 0.2], "source": "vcd_grow"})
            t0 = time.perf_counter()
            index.refresh()
            links.append(len(link_new_patch(paths, name, index=index)))
            times.append(time.perf_counter() - t0)
        print(f"linking: one new patch against {size:,} patches: median {np.median(times) * 1e3:.1f} ms, "
              f"p95 {np.percentile(times, 95) * 1e3:.1f} ms, {np.mean(links):.1f} links/patch "
              f"(scroll {side}³; incl. incremental index refresh; warm index build {t_index:.1f} s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=10)
    ap.add_argument("--step", type=float, default=5.0)
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--link-sizes", type=int, nargs="*", default=[1000, 10000])
    a = ap.parse_args()
    numba.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        truth = bench_growth(Path(tmp), a.patches, a.step, a.generations) if a.patches > 0 else None
        if a.link_sizes:
            bench_linking(Path(tmp), truth, a.link_sizes)


if __name__ == "__main__":
    main()
