"""The README's main command: `vcd demo` runs the whole pipeline through the real daemon, and says
truthfully why growth stopped (the scheduler's own rule) and how many patches reached the link target."""

import re
import subprocess
import sys

from .daemon.conftest import WAIT_CAP, kill_group


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo.volpkg"
    # --grow-seconds is only a cap (the demo stops at --patches); generous, so a busy machine is slower, not red.
    # Its own session: the demo's daemon and workers are killed with it whatever happens.
    p = subprocess.Popen([sys.executable, "-m", "vcd", "demo", "--walkthrough", "--out", str(out), "--shape", "64", "128", "128",
                          "--patches", "25", "--grow-seconds", "300"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=4 * WAIT_CAP)
    finally:
        kill_group(p.pid)
    assert p.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert "summary" in stdout and "trace sheet jumps              0" in stdout, stdout[-3000:]
    assert "daemon stopped" in stdout
    assert any(q.name.startswith("auto_trace_") for q in (out / "traces").iterdir())
    # why growth stopped is one of the scheduler's stop conditions, and the links row agrees with the ground truth
    # on disk: N of M patches with >= tgt links, counted from the patches' overlapping.json after linking
    stopped = re.search(r"growth stopped +(.*)", stdout).group(1)
    assert stopped.startswith(("link target reached", "patch limit reached", "expansion saturated",
                               "stopped by --grow-seconds")), stopped
    n_ok, n = map(int, re.search(r"links \(scheduler's measure\) +(\d+) of (\d+) patches", stdout).groups())
    from vcd.formats.overlaps import read_overlaps
    from vcd.formats.volpkg import list_patches
    patches = list_patches(out / "paths")
    assert n == len(patches) and n_ok == sum(len(read_overlaps(d)) >= 12 for d, _ in patches)
    if stopped.startswith("link target reached"):
        assert n_ok == n
    assert "density target reached" not in stdout
