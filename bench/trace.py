"""Benchmark the tracer: cm² per minute and the slope of run time over 3 trace lengths (linear?).

Run: ``python bench/trace.py``

Patches are sampled from a synthetic scroll's ground truth and linked with our linker; traces of
increasing length are made by limiting ``max_generations``. Prints the time per corner at each length —
roughly constant when the moving window keeps the work proportional to the front.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]


import tempfile
import time
from pathlib import Path

import numpy as np

from vcd.formats.tifxyz import read_surface, write_surface
from vcd.grow.linking import link_new_patch
from vcd.synth import load_truth, make_scroll
from vcd.synth.score import score_surface
from vcd.trace.run import run_trace


def build_collection(root, n_patches=900):
    """The benchmark collection: a medium 80×192×192 scroll under ``root`` with ``n_patches`` patches
    sampled from the ground truth at step 5 (40×40 vx each, ``auto_grown_*``, scale 0.2), linked with
    our linker. Returns ``(volpkg, truth, seed_patch_dir)``; the seed sits at small theta, mid z.
    Also used by ``bench/trace_vs_vc3d.py``, so both tracers see the same collection."""
    vp = make_scroll(Path(root) / "b.volpkg", shape=(80, 192, 192), preset="medium", seed=6, ct=False)
    t = load_truth(vp)
    rng = np.random.default_rng(0)
    for i in range(n_patches):
        th = rng.uniform(t.theta0 + 0.5, t.theta1 - 1.0)
        z0 = rng.uniform(3, 80 - 43)
        dth = 40 / max(t.radius(th, z0 + 20), 5.0)
        write_surface(vp / "paths" / f"auto_grown_{i:017d}", t.sample_grid(th, th + dth, z0, z0 + 40, 5),
                      {"scale": [0.2, 0.2], "source": "vcd_grow"})
    for p in sorted((vp / "paths").iterdir()):
        if p.name.startswith("auto_grown_"):
            link_new_patch(vp / "paths", p.name)
    return vp, t, pick_seed(vp, t)


def pick_seed(vp, t):
    """The patch nearest to theta0 + 2.5 rad, mid z (the benchmark's seed)."""
    best = None
    for p in sorted((vp / "paths").iterdir()):
        if not p.name.startswith("auto_grown_"):
            continue
        s = read_surface(p)
        _, th = t.nearest(s.points[s.valid])
        sc = abs(np.median(th) - t.theta0 - 2.5) + abs(s.points[s.valid][:, 2].mean() - 40) / 50
        if best is None or sc < best[0]:
            best = (sc, p)
    return best[1]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        vp, t, seed = build_collection(tmp)
        base = {"step": 2, "src_step": 5, "consensus_default_th": 6, "inlier_base_threshold": 12, "snapshot_every": 0}
        rows = []
        for gens in (25, 50, 100):
            t0 = time.perf_counter()
            r = run_trace(vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces", {**base, "max_generations": gens},
                          seed, warn=lambda m: None)
            dt = time.perf_counter() - t0
            sc = score_surface(read_surface(vp / "traces" / r["written"]).points, t)
            rows.append((r["corners"], dt, r["area_cm2"]))
            print(f"max_generations {gens:4d}: {r['corners']:5d} corners, {r['area_cm2']:.4f} cm² in {dt:.1f} s = "
                  f"{r['area_cm2'] / dt * 60:.4f} cm²/min, {dt / r['corners'] * 1e3:.1f} ms/corner, "
                  f"jumps {sc['jumps']}, mean dist {sc['mean_dist']:.2f} vx")
        c = np.array([r[0] for r in rows], float)
        s = np.array([r[1] for r in rows])
        slope, icpt = np.polyfit(c, s, 1)
        print(f"run time ≈ {icpt:.2f} s + {slope * 1e3:.2f} ms × corners (linear fit over 3 lengths; "
              f"ms/corner {', '.join(f'{x * 1e3:.1f}' for x in s / c)})")


if __name__ == "__main__":
    main()
