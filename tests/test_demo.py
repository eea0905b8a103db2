"""The README's main command: `vcd demo` runs the whole pipeline through the real daemon."""

import subprocess
import sys

from .daemon.conftest import WAIT_CAP, kill_group


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo.volpkg"
    # --grow-seconds is only a cap (the demo stops at --patches); generous, so a busy machine is slower, not red.
    # Its own session: the demo's daemon and workers are killed with it whatever happens.
    p = subprocess.Popen([sys.executable, "-m", "vcd", "demo", "--out", str(out), "--shape", "64", "128", "128",
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
