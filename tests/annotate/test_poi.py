"""Finding the patches at a point, masking around it, and the daemon's retrace (issue 9)."""

import math
import subprocess
import sys

from vcd.formats.tifxyz import read_surface
from vcd.synth import load_truth

from ..daemon.test_daemon import put_patch, put_trace
from ..reliability.events import watcher_saw


def test_patches_at_finds_exactly_the_planted_patches_and_mask_around_retraces(scroll_copy, daemon_factory):
    vp = scroll_copy
    t = load_truth(vp)
    planted = [put_patch(vp, f"auto_grown_2025010100000000{i}", 4.0 - 0.1 * i, 5.0 + 0.1 * i, 20 + i, 70 - i).name
               for i in range(3)]
    elsewhere = put_patch(vp, "auto_grown_20250101000000009", 6.0, 7.0, 20, 70).name
    next_wrap = put_patch(vp, "auto_grown_20250101000000008", 4.0 + 2 * math.pi, 5.0 + 2 * math.pi, 20, 70).name
    put_trace(vp, "auto_trace_20250101000000099", planted + [elsewhere])
    put_trace(vp, "auto_trace_20250101000000098", [next_wrap])
    p = t.point(t.theta0 + 4.5, 45.0)
    d = daemon_factory().start()  # stopped by the fixture even if an assertion fails
    q = d.queue()
    d.wait_for(lambda: q.traces_using(planted[0]) == ["auto_trace_20250101000000099"], "provenance")
    r = subprocess.run([sys.executable, "-m", "vcd", "patches-at", str(vp / "paths"), *map(str, p), "--radius", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(planted)
    r = subprocess.run([sys.executable, "-m", "vcd", "patches-at", str(vp / "paths"), *map(str, p),
                        "--mask-around", "8"], capture_output=True, text=True)
    assert r.returncode == 0 and "masked" in r.stdout
    s = read_surface(vp / "paths" / planted[0])
    assert (s.points[~s.valid] != -2).all() and (~s.valid).sum() > 0
    # the event: the watcher has recorded the three new masks (it queues the retrace before recording)
    d.wait_for(lambda: watcher_saw(q, vp, planted), "the watcher seeing the masks")
    # exactly the trace that used them is retraced (one job, or one per mask edit the watcher saw after an
    # earlier retrace job had already ended: on a busy machine the three edits can straddle a job's run)
    traces = {q.get(j["id"])["params"]["trace"] for j in q.list(kind="retrace")}
    assert traces and {t.rsplit("/", 1)[1] for t in traces} == {"auto_trace_20250101000000099"}, traces
    d.stop()
