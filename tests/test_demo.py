"""The README's main command: `vcd demo` runs the whole pipeline through the real daemon."""

import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo.volpkg"
    r = subprocess.run([sys.executable, "-m", "vcd", "demo", "--out", str(out), "--shape", "64", "128", "128",
                        "--patches", "25", "--grow-seconds", "40"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "summary" in r.stdout and "trace sheet jumps              0" in r.stdout, r.stdout[-3000:]
    assert "daemon stopped" in r.stdout
    assert any(p.name.startswith("auto_trace_") for p in (out / "traces").iterdir())
