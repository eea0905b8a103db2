"""Issue 14's tiling: does the tracer follow patches when a trace cell is wider than the wrap spacing?

Run: ``python bench/trace_tiling.py``

Builds a clean spiral with wraps 16 voxels apart and 3-voxel sheets (100×192×192), 60 perfect 20-voxel
patches (24 columns, densely overlapping, linked with our linker) plus planted one-wrap jump patches
making up 5 %, 10 % and 20 % of the collection (``tests/trace/tiling.py``), and traces from a middle
patch with 20-, 10- and 30-voxel cells (``step`` 1, 0.5, 1.5 × ``src_step`` 20), and from the
outermost patch; then the same tiling on a crushed, tilted spiral of the realistic family (seed 3,
wraps 7.5-20 voxels apart). Prints per trace: jump edges, mean / p95 / max distance to the true sheet (voxels),
wraps covered, area (vx²), QA hot corners, seconds.
"""

import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:] = [p for p in _sys.path if _Path(p or ".").resolve() != _HERE]
_sys.path.insert(0, str(_HERE.parent))

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from vcd.formats.tifxyz import read_surface, surface_area_vx2  # noqa: E402
from vcd.grow.linking import link_new_patch  # noqa: E402
from vcd.synth import load_truth  # noqa: E402
from vcd.synth.score import score_surface  # noqa: E402

from tests.trace import tiling  # noqa: E402


def line(label, vp, res, dt):
    s = read_surface(vp / "traces" / res["written"])
    sc = score_surface(s.points, load_truth(vp))
    print(f"{label:34s} jumps {sc['jumps']:3d}  mean {sc['mean_dist']:.2f}  p95 {sc['p95_dist']:.2f}  "
          f"max {sc['max_dist']:5.2f} vx  wraps {sc['wraps_covered']:.2f}  area {surface_area_vx2(s.points):7.0f} vx²  "
          f"QA hot {res['qa_suspicious']:3d}  {dt:5.1f} s")


def trace(label, vp, seed, **kw):
    t0 = time.perf_counter()
    res = tiling.trace(vp, seed, **kw)
    line(label, vp, res, time.perf_counter() - t0)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        vp = tiling.spiral_scroll(Path(tmp) / "t.volpkg")
        names = tiling.tile(vp, 60)
        wrong = tiling.plant_jumps(vp, 3)
        tiling.link(vp)
        seed = tiling.middle_seed(vp, names)
        for step in (1.0, 0.5, 1.5):
            trace(f"60 + 3 jumps, {20 * step:.0f}-vx cells", vp, seed, step=step)
        trace("from the outermost patch, 20 vx", vp, names[-1], step=1.0)
        trace("from the outermost patch, 10 vx", vp, names[-1], step=0.5)
        for share in (0.10, 0.20):
            k = int(round(share * len(names) / (1 - share)))
            more = tiling.plant_jumps(vp, k - len(wrong), seed=7 + k, prefix=f"auto_grown_8{k:02d}")
            for n in more:
                link_new_patch(vp / "paths", n)
            wrong += more
            trace(f"{share:.0%} wrong ({len(wrong)}), 20-vx cells", vp, seed, step=1.0)
        vp = tiling.realistic_scroll(Path(tmp) / "r.volpkg", seed=3)
        names = tiling.tile(vp, 60)
        tiling.plant_jumps(vp, 3)
        tiling.link(vp)
        for step in (1.0, 0.5):
            trace(f"realistic #3, 60 + 3, {20 * step:.0f}-vx cells", vp, tiling.middle_seed(vp, names), step=step)


if __name__ == "__main__":
    main()
