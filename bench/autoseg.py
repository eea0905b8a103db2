"""Benchmark ``vcd autoseg`` from an empty ``paths/`` against the ground truth (issue 18).

Run: ``python bench/autoseg.py [--family medium3|realistic|both] [--minutes 20] [--shape Z Y X]
[--seeds 0] [--workers 2] [--out DIR] [--zero-input]``

``--zero-input``: the volpkgs hold only ``volumes/`` (no params files, no ``vcd.toml``), as a scroll
arrives; autoseg measures the prediction and derives its params (issue 26).

- ``medium3``: the *medium* spiral with 3-voxel sheets (``vcd synth --preset medium --half-thickness
  1.5``), 192×256×256 (z, y, x) by default — the issue's "Done when" scroll;
- ``realistic``: the realistic family (``--preset realistic``, knobs drawn from the seed), 80×128×128
  by default, seeds from ``--seeds`` (e.g. ``--seeds 1 3``).

Each scroll is made fresh with ``vcd synth``'s params files (``seed.json``/``expand.json``), then
``vcd autoseg VOLPKG --minutes N`` runs as a child process exactly as a user would run it; the bench
reads the report it writes (``traces/autoseg_report.json``) and prints one line per scroll: true
coverage (same wrap, within 2 voxels), true sheet-switch rate, traced area, CPU seconds (the workers'
per-job CPU plus the daemon's autoseg ticks) and CPU per cm² traced, wall time, and whether the
prize line (>= 70 % at <= 0.5 %) is met.
"""

import sys as _sys
from pathlib import Path as _Path

# bench/queue.py must not shadow the standard library's `queue`
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

TOML = """[daemon]
workers = {workers}
lease_seconds = 60
shutdown_timeout = 20
[schedule]
interval_seconds = 1.0
"""


def make(out: Path, family: str, shape, seed: int, workers: int, zero_input: bool = False) -> Path:
    """A fresh synthetic volpkg with ``vcd synth``'s params files and a small vcd.toml; with
    ``zero_input`` only ``volumes/`` (and the truth, read by the scorer alone): autoseg configures itself."""
    from vcd.synth import load_truth, make_scroll
    from vcd.synth.generate import write_grow_params
    if out.exists():
        shutil.rmtree(out)
    over = {"half_thickness": 1.5} if family == "medium3" else {}
    preset = "medium" if family == "medium3" else "realistic"
    make_scroll(out, shape=tuple(shape), preset=preset, seed=seed, **over)
    if zero_input:
        return out
    write_grow_params(out, load_truth(out))
    (out / "vcd.toml").write_text(TOML.format(workers=workers))
    return out


def run(volpkg: Path, minutes: float, workers: int) -> tuple[dict, float, int]:
    """``vcd autoseg VOLPKG --minutes N --workers W`` as a child; (report, wall seconds, exit code)."""
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "vcd", "autoseg", str(volpkg), "--minutes", str(minutes),
                        "--workers", str(workers)],
                       capture_output=True, text=True)
    wall = time.time() - t0
    rep_path = volpkg / "traces" / "autoseg_report.json"
    if not rep_path.exists():
        print(p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
        return {}, wall, p.returncode
    return json.loads(rep_path.read_text()), wall, p.returncode


def line(name: str, rep: dict, wall: float, rc: int) -> str:
    if not rep:
        return f"{name:<28} no report (exit {rc})"
    t = rep.get("truth") or {}
    area = rep["traced_area_cm2"]
    cpu = rep["cpu_s_total"]
    per = f"{cpu / area:8.0f}" if area > 0 else "       -"
    return (f"{name:<28} {t.get('true_coverage', 0) * 100:6.1f} % {t.get('true_switch_rate', 0) * 100:8.3f} % "
            f"{area:9.4f} {cpu:8.0f} {per} {wall:7.0f} {len(rep['final_sheets']):4d}  "
            f"{'met' if t.get('prize_line_met') else 'not met':<8} {rep['status']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["medium3", "realistic", "both"], default="medium3")
    ap.add_argument("--minutes", type=float, default=20.0, help="vcd autoseg --minutes per scroll")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                    help="default 192 256 256 (medium3), 80 128 128 (realistic)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="keep the volpkgs here (default: a temporary directory)")
    ap.add_argument("--zero-input", action="store_true",
                    help="volpkgs as they arrive: no seed.json / expand.json / trace_params.json / vcd.toml")
    args = ap.parse_args()
    fams = ["medium3", "realistic"] if args.family == "both" else [args.family]
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vcd-bench-autoseg-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"vcd autoseg --minutes {args.minutes:g}, {args.workers} workers, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; volpkgs in {root}")
    print(f"{'scroll':<28} {'coverage':>8} {'switch':>10} {'area cm²':>9} {'CPU s':>8} {'CPU s/cm²':>8} "
          f"{'wall s':>7} {'sheets':>6}  prize    status")
    for fam in fams:
        shape = args.shape or ([192, 256, 256] if fam == "medium3" else [80, 128, 128])
        for seed in args.seeds:
            name = f"{fam}-{'x'.join(map(str, shape))}-s{seed}{'-zero' if args.zero_input else ''}"
            vp = make(root / f"{name}.volpkg", fam, shape, seed, args.workers, args.zero_input)
            rep, wall, rc = run(vp, args.minutes, args.workers)
            print(line(name, rep, wall, rc), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
