"""Benchmark patch growth and overlap linking.

Run: ``python bench/grow.py [--patches 10] [--link-sizes 1000 10000]`` (``--patches 0``: linking only)

Prints growth throughput in vx² of surface per CPU-second (single thread, after JIT warm-up) on a
medium synthetic scroll, the accuracy of those patches, and the time to link one new patch
against collections of 1k and 10k patches (bbox index held in memory, as the daemon does).

Side by side with VC3D's grower: ``python bench/grow.py --vs-vc3d [--vc3d-bin PATH] [--steps 5 10 20]
[--generations 80] [--seeds 5]``. On a clean spiral with 3-voxel sheets (``easy``, ``half_thickness``
1.5, 128×256×256) both ``vcd grow`` and ``vc_grow_seg_from_seed`` run as child processes
(``OMP_NUM_THREADS=1``, ``thread_limit`` 1) from the same explicit seeds on the true sheet, with the
same params JSON (VC3D keys; ``min_area_cm`` tiny so every patch is written). CPU time is the
``RUSAGE_CHILDREN`` user+sys delta per process; area is the geometric area of the written grid
(same function for both); accuracy is ``score_surface`` against the truth. Our in-process throughput
after warm-up (no interpreter start-up, no numba cache loading) is printed too. The binary comes
from ``--vc3d-bin``, else ``$VC3D_BIN``, else ``/work/vc3d/build/bin/vc_grow_seg_from_seed``
(build: docs/vc3d-comparison.md); without it only our grower runs.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]


import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import tifffile

from vcd.formats.tifxyz import read_surface, surface_area_vx2, write_surface
from vcd.errors import VcdError
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


# --------------------------------------------------------------------------- --vs-vc3d

VC3D_DEFAULT_BIN = "/work/vc3d/build/bin/vc_grow_seg_from_seed"
VS_SHAPE = (128, 256, 256)   # (z, y, x) voxels


def vs_scroll(work: Path, seed: int) -> Path:
    """Clean ``easy`` spiral (wraps 20 vx apart) whose prediction bands are 3 voxels thick."""
    vp = work / "spiral3.volpkg"
    if not (vp / "synth_truth.json").exists():
        make_scroll(vp, shape=VS_SHAPE, preset="easy", seed=seed, half_thickness=1.5, ct=False)
    return vp


def vs_seeds(truth, n: int, margin: float = 12.0) -> list:
    """``n`` points (x, y, z) on the true sheet, spread over the wraps and over z, ``margin`` voxels
    inside the volume."""
    Z, Y, X = truth.shape
    out = []
    for th in np.linspace(truth.theta0 + math.pi, truth.theta1 - 0.5, 4 * n):
        z = Z * (0.35, 0.5, 0.65)[len(out) % 3]
        p = truth.point(th, z)
        if margin <= p[0] <= X - 1 - margin and margin <= p[1] <= Y - 1 - margin:
            out.append((float(th), [float(v) for v in p]))
    idx = np.linspace(0, len(out) - 1, n).round().astype(int)
    return [out[i][1] for i in idx]


def vs_params(step: float, gens: int, cache_root: Path) -> dict:
    """One params JSON for both growers (VC3D's keys; every patch written)."""
    return {"mode": "seed", "step_size": step, "generations": gens, "min_area_cm": 1e-9, "thread_limit": 1,
            "cache_root": str(cache_root), "cache_size": 1e9}


def run_child(cmd, env, log: Path):
    """Run ``cmd``; return (returncode, CPU s user+sys from RUSAGE_CHILDREN, wall s)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def in_volume(points: np.ndarray, shape) -> np.ndarray:
    """Copy of a grid with every point outside the ``(z, y, x)`` volume set invalid (-1): VC3D's grower
    keeps extrapolating past the volume's faces, where there is no data to follow."""
    Z, Y, X = shape
    p = np.array(points, dtype=np.float32)
    out = (p[..., 0] < 0) | (p[..., 0] > X - 1) | (p[..., 1] < 0) | (p[..., 1] > Y - 1) | (p[..., 2] <= 0) | \
          (p[..., 2] > Z - 1)
    p[out] = -1
    return p


def score_patch(tgt: Path, truth) -> dict | None:
    """In-volume area (vx²), area of the quads beyond the volume, and accuracy (in-volume points) of the
    one ``auto_grown_*`` in ``tgt`` (None if nothing was written)."""
    out = sorted(p for p in tgt.iterdir() if p.name.startswith("auto_grown_"))
    if not out:
        return None
    raw = read_surface(out[-1]).points
    pts = in_volume(raw, truth.shape)
    area = surface_area_vx2(pts)
    sc = score_surface(pts, truth)
    lifted = np.stack([tifffile.imread(out[-1] / f"{c}.tif") for c in "xyz"], -1).astype(np.float64)
    lifted[..., 2] += np.where(lifted[..., 0] != -1, 1e5, 0.0)   # every written corner valid, even z <= 0
    return dict(area=area, outside=surface_area_vx2(lifted) - area, jumps=sc["jumps"], mean=sc["mean_dist"],
                p95=sc["p95_dist"])


def vs_run(tool: str, cmd_base, vol: Path, pfile: Path, seed, tgt: Path, env, truth) -> dict:
    """One grower process from ``seed`` into the empty dir ``tgt``; scored against ``truth``."""
    shutil.rmtree(tgt, ignore_errors=True)
    tgt.mkdir(parents=True)
    rc, cpu, wall = run_child(cmd_base + [str(vol), str(tgt), str(pfile)] + [f"{v:.3f}" for v in seed], env,
                              tgt.with_suffix(".log"))
    r = score_patch(tgt, truth) or dict(area=0.0, outside=0.0, jumps=0, mean=float("nan"), p95=float("nan"))
    return dict(r, tool=tool, cpu=cpu, wall=wall, rc=rc, log=str(tgt.with_suffix(".log")))


def vs_inprocess(vol_path: Path, seeds, params: dict) -> dict:
    """Our grower through the library API in this process, after one untimed warm-up (JIT, caches)."""
    from vcd.grow.run import grow_surface as api_grow
    vol = open_volume(vol_path)
    api_grow(vol, params, seeds[0])
    area = cpu = 0.0
    for s in seeds:
        c0 = time.process_time()
        try:
            surf = api_grow(vol, params, s)
        except VcdError:   # nothing grown: counts as 0 vx²
            surf = None
        cpu += time.process_time() - c0
        area += surface_area_vx2(in_volume(surf.points, vol.shape)) if surf is not None else 0.0
    return dict(area=area, cpu=cpu)


def vs_summary(rows) -> dict:
    area, cpu = sum(r["area"] for r in rows), sum(r["cpu"] for r in rows)
    means = [r["mean"] for r in rows if r["area"] > 0]
    return dict(n=len(rows), written=sum(r["area"] > 0 for r in rows), area=area, cpu=cpu,
                outside=sum(r["outside"] for r in rows),
                rate=area / cpu if cpu > 0 else float("nan"), jumps=sum(r["jumps"] for r in rows),
                max_jumps=max(r["jumps"] for r in rows), mean=float(np.mean(means)) if means else float("nan"),
                p95=max((r["p95"] for r in rows if r["area"] > 0), default=float("nan")),
                failed=sum(r["rc"] != 0 for r in rows))


def vs_print(step, res: dict, inproc: dict):
    print(f"\nstep_size {step:g}:")
    print(f"  {'grower':10s} {'patches':>7s} {'area vx²':>10s} {'CPU-s':>7s} {'vx²/CPU-s':>10s} {'jumps':>5s} "
          f"{'max/patch':>9s} {'mean vx':>7s} {'p95 vx':>6s} {'outside vx²':>11s}")
    for tool, s in res.items():
        print(f"  {tool:10s} {s['written']:3d}/{s['n']:<3d} {s['area']:10,.0f} {s['cpu']:7.1f} {s['rate']:10,.0f} "
              f"{s['jumps']:5d} {s['max_jumps']:9d} {s['mean']:7.2f} {s['p95']:6.2f} {s['outside']:11,.0f}"
              + (f"  ({s['failed']} exited non-zero)" if s["failed"] else ""))
    ip = inproc["area"] / inproc["cpu"] if inproc["cpu"] > 0 else float("nan")
    print(f"  {'vcd in-proc':10s} {'':7s} {inproc['area']:10,.0f} {inproc['cpu']:7.1f} {ip:10,.0f}"
          "   (library API after warm-up: no start-up, no numba cache load)")
    if "vc3d" in res and res["vc3d"]["rate"] > 0:
        v = res["vc3d"]
        print(f"  ratio ours/VC3D: vx²/CPU-s {res['vcd']['rate'] / v['rate']:.2f}× (CLI), {ip / v['rate']:.2f}× "
              f"(in-process); area {res['vcd']['area'] / max(v['area'], 1e-9):.2f}×; jumps {res['vcd']['jumps']} vs "
              f"{v['jumps']}")
        v_all = (v["area"] + v["outside"]) / v["cpu"]   # VC3D credited with what it grew beyond the volume too
        print(f"  if VC3D's area outside the volume counted: VC3D {v_all:,.0f} vx²/CPU-s; ours/VC3D "
              f"{res['vcd']['rate'] / v_all:.2f}× (CLI), {ip / v_all:.2f}× (in-process)")


def bench_vs_vc3d(work: Path, vbin: Path | None, steps, gens: int, n_seeds: int, scroll_seed: int):
    vp = vs_scroll(work, scroll_seed)
    truth = load_truth(vp)
    vol = vp / "volumes" / "synth_pred.zarr"
    seeds = vs_seeds(truth, n_seeds)
    print(f"spiral: easy, 3-voxel sheets, {VS_SHAPE} (z, y, x), wraps {truth.pitch:g} vx apart; "
          f"{len(seeds)} seeds on the true sheet; generations {gens}; single thread")
    print(f"VC3D: {vbin}" if vbin else "VC3D: no binary (--vc3d-bin, $VC3D_BIN or " + VC3D_DEFAULT_BIN
          + "; build it as docs/vc3d-comparison.md says) - running only ours")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_DYNAMIC": "false", "NUMBA_NUM_THREADS": "1"}
    tools = {"vcd": [sys.executable, "-m", "vcd.cli.main", "grow"]}
    if vbin:
        tools["vc3d"] = [str(vbin)]
    for tool, cmd in tools.items():   # untimed warm-up: numba's on-disk cache, distance caches, page cache
        pf = work / f"warm_{tool}.json"
        pf.write_text(json.dumps(vs_params(max(steps), gens, work / f"cache_{tool}")))
        vs_run(tool, cmd, vol, pf, seeds[0], work / f"warm_{tool}", env, truth)
    for step in steps:
        res = {}
        for tool, cmd in tools.items():
            pf = work / f"p_{tool}_{step:g}.json"
            pf.write_text(json.dumps(vs_params(step, gens, work / f"cache_{tool}")))
            rows = [vs_run(tool, cmd, vol, pf, s, work / f"{tool}_s{step:g}_{i}", env, truth)
                    for i, s in enumerate(seeds)]
            res[tool] = vs_summary(rows)
        inproc = vs_inprocess(vol, seeds, vs_params(step, gens, work / "cache_vcd"))
        vs_print(step, res, inproc)
    print(f"\nseeds (x, y, z): {[[round(v, 1) for v in s] for s in seeds]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=10)
    ap.add_argument("--step", type=float, default=5.0)
    ap.add_argument("--generations", type=int, default=None, help="default 40 (--vs-vc3d: 80)")
    ap.add_argument("--link-sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--vs-vc3d", action="store_true", help="side by side with VC3D's vc_grow_seg_from_seed")
    ap.add_argument("--vc3d-bin", default=os.environ.get("VC3D_BIN", VC3D_DEFAULT_BIN))
    ap.add_argument("--steps", type=float, nargs="+", default=[5.0, 10.0, 20.0], help="--vs-vc3d step sizes")
    ap.add_argument("--seeds", type=int, default=5, help="--vs-vc3d: seeds per step size")
    ap.add_argument("--scroll-seed", type=int, default=1, help="--vs-vc3d: synth seed of the spiral")
    ap.add_argument("--workdir", help="--vs-vc3d: keep volume, patches and logs here (default: temporary)")
    a = ap.parse_args()
    numba.set_num_threads(1)
    if a.vs_vc3d:
        vbin = Path(a.vc3d_bin)
        vbin = vbin if vbin.is_file() and os.access(vbin, os.X_OK) else None
        gens = a.generations if a.generations is not None else 80
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(a.workdir or tmp)
            work.mkdir(parents=True, exist_ok=True)
            bench_vs_vc3d(work, vbin, a.steps, gens, a.seeds, a.scroll_seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        gens = a.generations if a.generations is not None else 40
        truth = bench_growth(Path(tmp), a.patches, a.step, gens) if a.patches > 0 else None
        if a.link_sizes:
            bench_linking(Path(tmp), truth, a.link_sizes)


if __name__ == "__main__":
    main()
