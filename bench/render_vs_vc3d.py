"""Render side by side with VC3D's ``vc_render_tifxyz``: same trace, same arguments, per-layer correlation.

Run: ``nice python bench/render_vs_vc3d.py [--vc3d-bin PATH] [--scale 0.5] [--group 1] [--layers 21]``
(binary default ``$VC3D_RENDER_BIN`` or ``/work/vc3d/build/bin/vc_render_tifxyz``; build recipe in
docs/vc3d-comparison.md). Without the binary it says so and exits 0.

A synthetic scroll (medium preset) and a trace sampled from its ground truth over several wraps with
a hole, in both grid handednesses (so both outcomes of VC3D's global normal flip are compared), at the
given arguments and at two more (0.7 0 5, 2 0 5); ``vcd render VOL out/%02d.tif SEG SCALE GROUP LAYERS`` and
``vc_render_tifxyz -v VOL -o out/%02d.tif -s SEG --scale SCALE -g GROUP -n LAYERS``. Prints the image
sizes, the global normal flip each chose, and per layer the Pearson correlation over all pixels, the
share of pixels whose on/off-surface state differs and the mean absolute difference (grey levels).
Pass: sizes equal and every layer correlates >= 0.95.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue` for the other benchmarks
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

from vcd.formats.tifxyz import read_surface, write_surface  # noqa: E402
from vcd.post.render import RenderGeometry, render  # noqa: E402
from vcd.synth import load_truth, make_scroll  # noqa: E402

DEFAULT_BIN = "/work/vc3d/build/bin/vc_render_tifxyz"


def make_case(tmp: Path, seed: int = 1):
    """The volume and two traces: one sampled from the ground truth over several wraps with a hole, and
    the same with its columns reversed (the other grid handedness: the global normal flip differs)."""
    vp = make_scroll(tmp / "r.volpkg", shape=(160, 224, 224), preset="medium", seed=seed)
    t = load_truth(vp)
    g = t.sample_grid(t.theta0 + 6.0, t.theta0 + 16.0, 8, 150, 4)
    g[10:14, 40:55] = -1  # a hole
    segs = [write_surface(tmp / "auto_trace_bench", g, {"scale": [0.25, 0.25]}),
            write_surface(tmp / "auto_trace_reversed", g[:, ::-1].copy(), {"scale": [0.25, 0.25]})]
    return vp / "volumes" / "synth_ct.zarr", segs


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    a, b = a.astype(np.float64), b.astype(np.float64)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"corr": corr, "onoff": float(((a > 0) != (b > 0)).mean()), "mad": float(np.abs(a - b).mean())}


def run_case(vc3d_bin: str, vol: Path, seg: Path, out: Path, scale: float, group: int, layers: int) -> bool:
    t0 = time.perf_counter()
    ours = render(vol, str(out / "vcd" / "%02d.tif"), seg, scale, group, layers, processes=1)
    t_ours = time.perf_counter() - t0
    (out / "vc").mkdir(parents=True)
    t0 = time.perf_counter()
    r = subprocess.run([vc3d_bin, "-v", str(vol), "-o", str(out / "vc" / "%02d.tif"), "-s", str(seg),
                        "--scale", str(scale), "-g", str(group), "-n", str(layers)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    t_vc = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return False
    geo = RenderGeometry(read_surface(seg), scale, group)
    print(f"{seg.name}: scale {scale} group {group} layers {layers}; vcd flip={geo.flip}; "
          f"vcd {t_ours:.1f} s, VC3D {t_vc:.1f} s (1 thread)")
    ok = True
    for k, p in enumerate(ours["layers"]):
        mine, theirs = tifffile.imread(p), tifffile.imread(out / "vc" / f"{k:02d}.tif")
        if mine.shape != theirs.shape:
            print(f"  layer {k}: size differs: vcd {mine.shape[1]}x{mine.shape[0]}, "
                  f"VC3D {theirs.shape[1]}x{theirs.shape[0]}")
            return False
        c = compare(mine, theirs)
        ok &= c["corr"] >= 0.95
        print(f"  layer {k:2d}: {mine.shape[1]}x{mine.shape[0]} corr {c['corr']:.4f}  on/off differ "
              f"{100 * c['onoff']:.3f} %  mean |diff| {c['mad']:.3f}  mean vcd {mine.mean():.1f} "
              f"VC3D {theirs.mean():.1f}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vc3d-bin", default=os.environ.get("VC3D_RENDER_BIN", DEFAULT_BIN))
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--group", type=int, default=1)
    ap.add_argument("--layers", type=int, default=21)
    a = ap.parse_args()
    if not Path(a.vc3d_bin).exists():
        print(f"no VC3D binary at {a.vc3d_bin}: build it as docs/vc3d-comparison.md describes; skipping")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vol, segs = make_case(tmp)
        runs = [(segs[0], a.scale, a.group, a.layers), (segs[1], a.scale, a.group, a.layers),
                (segs[0], 0.7, 0, 5), (segs[1], 2.0, 0, 5)]  # + a non-integer and an upsampling step
        ok = all([run_case(a.vc3d_bin, vol, seg, tmp / f"run{i}", s, g, n)
                  for i, (seg, s, g, n) in enumerate(runs)])
        print("PASS" if ok else "FAIL: a layer correlates below 0.95 or a size differs")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
