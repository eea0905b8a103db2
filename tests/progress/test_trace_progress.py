"""A trace's progress means something (issue 16, item 6): corners, corners/s, a share of the
corners its linked patches can give, and 100 % when it is done."""

from __future__ import annotations

import re

import numpy as np

from vcd.formats.overlaps import linked_to
from vcd.trace.progress import union_area
from vcd.trace.run import run_trace

from tests.trace.conftest import TRACE_PARAMS, seed_near


def test_union_area_counts_overlaps_once():
    g = np.zeros((11, 11, 3))
    g[..., 0], g[..., 1] = np.meshgrid(np.arange(11) * 5.0, np.arange(11) * 5.0, indexing="xy")
    g[..., 2] = 20.0
    v = np.ones((11, 11), bool)
    one = union_area([(g, v)], [5.0], 10.0)
    two = union_area([(g, v), (g + [0, 0, 0.5], v)], [5.0, 5.0], 10.0)  # the same sheet twice
    assert one == two and 0.8 * 50 ** 2 <= one <= 1.6 * 55 ** 2       # ≈ the 50×50 voxel square
    assert sorted(linked_to([{1}, {0}, {3}, {2}], 0)) == [0, 1]


def test_trace_progress_reaches_100_percent_with_corner_rate(collection_copy):
    vp = collection_copy
    seen = []
    res = run_trace(vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces", TRACE_PARAMS,
                    vp / "paths" / seed_near(vp, 2.5), progress=lambda f, m: seen.append((f, m)),
                    warn=lambda m: None)
    fr = [f for f, _ in seen]
    assert len(seen) > 10 and fr[-1] == 1.0 and all(0 <= f <= 1 for f in fr)
    assert f"done: {res['corners']} corners" in seen[-1][1]
    assert max(fr[:-1]) >= 0.3, max(fr[:-1])  # the reachable share is a real bound, not generation/1000
    msgs = [m for _, m in seen[:-1]]
    assert all(re.search(r"\d+ corners \(\d+% of <= \d+ reachable\).* \d+ corners/s", m) for m in msgs), msgs[-1]
    rates = [int(re.search(r"(\d+) corners/s", m).group(1)) for m in msgs[len(msgs) // 2:]]
    assert max(rates) > 0
    # the share is the corners over the target, rising as the trace grows
    n = [int(re.search(r": (\d+) corners", m).group(1)) for m in msgs]
    assert n == sorted(n) and fr[:-1] == sorted(fr[:-1])


def test_vcd_trace_prints_corners_rate_eta_and_done(collection_copy, tmp_path):
    import json
    import subprocess
    import sys
    vp = collection_copy
    (tmp_path / "t.json").write_text(json.dumps(TRACE_PARAMS))
    args = [vp / "volumes" / "synth_pred.zarr", vp / "paths", tmp_path / "out", tmp_path / "t.json",
            vp / "paths" / seed_near(vp, 2.5)]
    r = subprocess.run([sys.executable, "-m", "vcd", "trace", *map(str, args)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    assert re.search(r"corners/s.*\| [\d.e+-]+ %/s, \d+ s, ETA \d+", lines[0]), lines[0]
    assert re.match(r"\[100\.0%\] done: \d+ corners in \d+ s .*\| done in \d+ s", lines[-1]), lines[-1]
