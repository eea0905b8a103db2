"""Our tracer next to VC3D's ``vc_grow_seg_from_segments`` on the same collection, single-threaded.

Run: ``nice python bench/trace_vs_vc3d.py [--vc3d-bin PATH]`` (default ``$VC3D_BIN`` or
``/work/vc3d/build/bin/vc_grow_seg_from_segments``). Without the binary it prints where the build
recipe is (docs/vc3d-comparison.md) and exits 0.

Collection: ``bench/trace.py``'s ``build_collection`` (medium 80×192×192 scroll, 900 linked 40×40 vx
patches sampled from the ground truth at step 5, named ``auto_grown_*`` with ``bbox``/``format``/
``scale`` in meta.json, ``overlapping.json`` links) — exactly what VC3D's loader accepts.

VC3D has no generation limit (``stop_gen`` is hard-coded to 100000, ``max_width`` only stops the
sliding-window extension beyond an initial 4500 vx wide window), so the three trace lengths come from
the collection instead: the patches that end at most W = 3 and 6 radians past the seed's angle
(copied to a separate src dir; the seed sits 2 radians from the inner end), and the whole collection. Both tracers run to completion on each, from the same
seed patch, with the same params (step 2, src_step 5 → 10 vx cells, consensus 6/2, inlier base 12,
``global_steps_per_window`` 0 (``--global-steps``; VC3D segfaults with 1 or the tutorial's 3 here), VC3D's
defaults otherwise, VC3D's snapshot cadence of 50 generations), each as one child process of
its CLI (so loading the 900 patches counts for both; ours after a warm-up run that fills numba's
cache), with ``OMP_NUM_THREADS=1``. CPU time is ``RUSAGE_CHILDREN`` user + sys of the child.

Area is the geometric area of the written grid (``vcd.formats.tifxyz.surface_area_vx2``, the same
function for both; VC3D's meta ``area_cm2`` is a cell-count estimate and is printed alongside).
Accuracy is ``vcd.synth.score.score_surface`` against the ground truth.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` (nor bench/trace.py the stdlib `trace`)
_HERE = _Path(__file__).resolve().parent
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _HERE]

import argparse
import sys
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from vcd.formats.tifxyz import area_cm2, read_surface, surface_area_vx2
from vcd.kernels.points import valid_mask, valid_quads
from vcd.synth.score import jump_edges, score_surface

DEFAULT_BIN = "/work/vc3d/build/bin/vc_grow_seg_from_segments"
PARAMS = {"step": 2, "src_step": 5, "consensus_default_th": 6, "consensus_limit_th": 2,
          "inlier_base_threshold": 12, "global_steps_per_window": 0}
WINDOWS = (3.0, 6.0, None)   # patches up to seed angle + W radians; None = the whole collection


def _bench_trace():
    spec = importlib.util.spec_from_file_location("bench_trace", _HERE / "trace.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_child(cmd, env=None, log=None):
    """Run ``cmd``; return (returncode, wall s, cpu s) with cpu from RUSAGE_CHILDREN."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log or os.devnull, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _only_trace(tgt: Path) -> Path | None:
    out = sorted(p for p in tgt.iterdir() if p.name.startswith("auto_trace_"))
    return out[-1] if out else None


def _subset(paths: Path, dst: Path, th_range: dict, lo: float, hi: float, seed: str) -> int:
    dst.mkdir(parents=True)
    n = 0
    for name, (a, b) in th_range.items():
        if (lo <= a and b <= hi) or name == seed:
            shutil.copytree(paths / name, dst / name)
            n += 1
    return n


def _jump_free_area_vx2(points: np.ndarray, truth) -> float:
    """Geometric area of the quads with 4 valid corners and no sheet jump on any of their 4 edges."""
    p = points.astype(np.float64)
    v = valid_mask(p)
    th = np.zeros(v.shape)
    th[v] = truth.nearest(p[v])[1]
    hj, vj = jump_edges(th, v)
    q = valid_quads(v) & ~hj[:-1] & ~hj[1:] & ~vj[:, :-1] & ~vj[:, 1:]
    if not q.any():
        return 0.0
    a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
    return float(0.5 * (np.linalg.norm(np.cross(b - a, c - a), axis=1) + np.linalg.norm(np.cross(b - d, c - d), axis=1)).sum())


def _score(tracer, label, out, cpu, wall, truth, voxelsize, n_patches):
    s = read_surface(out)
    meta = json.loads((out / "meta.json").read_text())
    area = area_cm2(surface_area_vx2(s.points), voxelsize)
    good = area_cm2(_jump_free_area_vx2(s.points, truth), voxelsize)
    sc = score_surface(s.points, truth)
    return dict(tracer=tracer, length=label, patches=n_patches, area=area, meta_area=float(meta.get("area_cm2", np.nan)),
                good=good, cpu=cpu, wall=wall, rate=area / cpu * 60 if cpu > 0 else float("nan"),
                good_rate=good / cpu * 60 if cpu > 0 else float("nan"), jumps=sc["jumps"],
                mean_dist=sc["mean_dist"], jump_free=sc["jump_free_fraction"], wraps=sc["wraps_covered"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vc3d-bin", default=os.environ.get("VC3D_BIN", DEFAULT_BIN))
    ap.add_argument("--workdir", help="keep the collection and outputs here (default: a temporary directory)")
    ap.add_argument("--global-steps", type=int, default=0,
                    help="global_steps_per_window for both tracers (default 0: VC3D's default; with 1 or the "
                         "tutorial's 3 this VC3D build segfaults in its first global optimisation on this collection)")
    args = ap.parse_args(argv)
    vbin = Path(args.vc3d_bin)
    if not (vbin.is_file() and os.access(vbin, os.X_OK)):
        print(f"VC3D binary not found at {vbin}.\nBuild vc_grow_seg_from_segments as described in "
              f"docs/vc3d-comparison.md (Debian packages + the two tracer targets), then run\n"
              f"  python bench/trace_vs_vc3d.py --vc3d-bin /path/to/vc_grow_seg_from_segments\n"
              f"or set VC3D_BIN.")
        return 0

    tmpctx = tempfile.TemporaryDirectory() if not args.workdir else None
    work = Path(args.workdir or tmpctx.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        bt = _bench_trace()
        if (work / "b.volpkg" / "paths").is_dir():   # --workdir from an earlier run: reuse its collection
            from vcd.synth import load_truth
            vp = work / "b.volpkg"
            truth = load_truth(vp)
            seed = bt.pick_seed(vp, truth)
            for d in work.glob("src_*"):
                shutil.rmtree(d)
            for d in list(work.glob("tgt_*")) + [work / "warm_ours"]:
                shutil.rmtree(d, ignore_errors=True)
        else:
            vp, truth, seed = bt.build_collection(work)
        paths, vol = vp / "paths", vp / "volumes" / "synth_pred.zarr"
        voxelsize = json.loads((vol / "meta.json").read_text())["voxelsize"]
        th_range = {}
        for p in sorted(paths.iterdir()):
            if p.name.startswith("auto_grown_"):
                s = read_surface(p)
                _, th = truth.nearest(s.points[s.valid])
                th_range[p.name] = (float(th.min()), float(th.max()))
        seed_th = float(np.mean(th_range[seed.name]))
        print(f"collection: {len(th_range)} patches in {time.perf_counter() - t0:.0f} s; seed {seed.name} at "
              f"theta {seed_th:.2f} (collection {truth.theta0:.2f}..{truth.theta1:.2f}); VC3D: {vbin}")
        pfile = work / "params.json"
        pfile.write_text(json.dumps({**PARAMS, "global_steps_per_window": args.global_steps}))
        print(f"params (both tracers): {pfile.read_text()}")
        env1 = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_DYNAMIC": "false", "NUMBA_NUM_THREADS": "1"}
        ours_cmd = [sys.executable, "-m", "vcd.cli.main", "trace"]

        # warm-up (not timed): fills numba's on-disk cache and the page cache
        _run_child(ours_cmd + [str(vol), str(paths), str(work / "warm_ours"), str(pfile), str(seed)], env1)
        rows = []
        for k, W in enumerate(WINDOWS):
            if W is None:
                src, label, n = paths, "all", len(th_range)
            else:
                src, label = work / f"src_{k}", f"+{W:g} rad"
                n = _subset(paths, src, th_range, -np.inf, seed_th + W, seed.name)
            for tracer in ("vc3d", "vcd"):
                tgt = work / f"tgt_{tracer}_{k}"   # never the src dir: VC3D writes auto_grown_* snapshots
                tgt.mkdir()
                if tracer == "vc3d":
                    cmd = [str(vbin), str(vol), str(src), str(tgt), str(pfile), str(src / seed.name)]
                else:
                    cmd = ours_cmd + [str(vol), str(src), str(tgt), str(pfile), str(src / seed.name)]
                rc, wall, cpu = _run_child(cmd, env1, log=work / f"log_{tracer}_{k}.txt")
                out = _only_trace(tgt)
                if rc != 0 or out is None:
                    print(f"{tracer} {label}: failed (exit {rc}); log {work / f'log_{tracer}_{k}.txt'}")
                    continue
                rows.append(_score(tracer, label, out, cpu, wall, truth, voxelsize, n))
                r = rows[-1]
                print(f"  {tracer:5s} {label:9s} {r['area']:.4f} cm² in {cpu:.1f} CPU-s ({wall:.1f} s wall)", flush=True)

        print()
        hdr = (f"{'tracer':6s} {'length':9s} {'patches':>7s} {'area cm²':>9s} {'(meta)':>8s} {'no-jump':>8s} {'CPU-s':>7s} "
               f"{'wall-s':>7s} {'cm²/CPU-min':>11s} {'(no-jump)':>9s} {'jumps':>5s} {'mean vx':>7s} {'jump-free':>9s} "
               f"{'wraps':>5s}")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            print(f"{r['tracer']:6s} {r['length']:9s} {r['patches']:7d} {r['area']:9.4f} {r['meta_area']:8.4f} {r['good']:8.4f} "
                  f"{r['cpu']:7.1f} {r['wall']:7.1f} {r['rate']:11.4f} {r['good_rate']:9.4f} {r['jumps']:5d} {r['mean_dist']:7.2f} {r['jump_free']:9.2f} "
                  f"{r['wraps']:5.2f}")
        cpu = {tr: sum(r["cpu"] for r in rows if r["tracer"] == tr) for tr in ("vcd", "vc3d")}
        if all(c > 0 for c in cpu.values()):
            print()
            for key, what in (("area", "area"), ("good", "jump-free area")):
                rate = {tr: sum(r[key] for r in rows if r["tracer"] == tr) / cpu[tr] * 60 for tr in cpu}
                print(f"over all lengths, {what}: vcd {rate['vcd']:.4f}, VC3D {rate['vc3d']:.4f} cm²/CPU-min; "
                      f"ratio ours/VC3D = {rate['vcd'] / rate['vc3d']:.2f}")
            for tr in ("vcd", "vc3d"):
                rs = [r for r in rows if r["tracer"] == tr]
                if len(rs) >= 2:
                    a = np.array([r["area"] for r in rs])
                    c = np.array([r["cpu"] for r in rs])
                    slope, icpt = np.polyfit(a, c, 1)
                    print(f"  {tr}: CPU ≈ {icpt:.1f} s + {slope:.0f} s/cm² (fit over {len(rs)} lengths)")
    finally:
        if tmpctx is not None:
            tmpctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
