"""Benchmark: synthetic scroll generation speed (target: 384³ in under a minute on 2 cores).

Run: ``python bench/synth.py [--shape Z Y X] [--preset medium|realistic] [--seed N] [--param key=value ...]``

For ``realistic`` it also prints the drawn knobs and what the rendered prediction shows (band voxels,
fused zones' gap / thickness, truth queries per second).
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]


import argparse
import json
import tempfile
import time
from pathlib import Path

from vcd.synth import make_scroll


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", nargs=3, type=int, default=[384, 384, 384])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    over = {k: json.loads(v) if v[:1] in "[{0123456789.-tfn" else v
            for k, _, v in (p.partition("=") for p in a.param)}
    with tempfile.TemporaryDirectory() as tmp:
        make_scroll(Path(tmp) / "warm.volpkg", shape=(32, 48, 48), preset=a.preset, **over)  # JIT warm-up
        t = time.perf_counter()
        out = make_scroll(Path(tmp) / "s.volpkg", shape=tuple(a.shape), preset=a.preset, seed=a.seed, **over)
        dt = time.perf_counter() - t
        n = a.shape[0] * a.shape[1] * a.shape[2]
        print(f"synth {a.preset} {tuple(a.shape)}: {dt:.1f} s wall, {n / dt / 1e6:.1f} Mvoxel/s "
              f"(prediction + CT volumes, 3 levels each)")
        if a.preset == "realistic":
            _report(out)


def _report(out):
    import numpy as np
    from vcd.formats.volume import open_volume
    from vcd.synth import load_truth
    t = load_truth(out)
    k = {key: v for key, v in t.params.items() if key != "vec"}
    print("knobs:", json.dumps(k))
    pred = open_volume(out / "volumes" / "synth_pred.zarr").levels[0].read_all()
    print(f"band voxels (>= 170): {(pred >= 170).mean():.3f} of the volume; wraps {t.n_wraps:.1f}")
    for f in t.fused:
        print(f"fused zone on wrap {f['wrap']}: gap {f['gap']:.2f} vx < thickness {f['thickness']:.2f} vx, "
              f"core ±{f['extent_arc']:.0f} vx along the sheet, ±{f['extent_s']:.0f} vx along the axis")
    pts = np.random.default_rng(0).uniform(0, 1, (20000, 3)) * np.array(t.shape[::-1])
    c = time.perf_counter()
    t.nearest(pts)
    print(f"truth.nearest: {len(pts) / (time.perf_counter() - c):.0f} points/s (random points in the volume)")


if __name__ == "__main__":
    main()
