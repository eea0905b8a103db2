"""Benchmark: synthetic scroll generation speed (target: 384³ in under a minute on 2 cores).

Run: ``python bench/synth.py [--shape Z Y X] [--preset medium]``
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]


import argparse
import tempfile
import time
from pathlib import Path

from vcd.synth import make_scroll


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", nargs=3, type=int, default=[384, 384, 384])
    ap.add_argument("--preset", default="medium")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_scroll(Path(tmp) / "warm.volpkg", shape=(32, 48, 48), preset=a.preset)  # JIT warm-up
        t = time.perf_counter()
        make_scroll(Path(tmp) / "s.volpkg", shape=tuple(a.shape), preset=a.preset)
        dt = time.perf_counter() - t
    n = a.shape[0] * a.shape[1] * a.shape[2]
    print(f"synth {a.preset} {tuple(a.shape)}: {dt:.1f} s wall, {n / dt / 1e6:.1f} Mvoxel/s "
          f"(prediction + CT volumes, 3 levels each)")


if __name__ == "__main__":
    main()
