"""Issue 31 item 8: a second ``vcd autoseg`` refused by the lock writes nothing (no ``autoseg_state`` /
``autoseg_runs`` rows) before it stops with one line."""

from __future__ import annotations

import subprocess
import sys


def test_autoseg_refused_by_the_lock_writes_nothing(daemon_factory):
    d = daemon_factory().start()
    q = d.queue()
    out = subprocess.run([sys.executable, "-m", "vcd", "autoseg", str(d.volpkg), "--minutes", "1",
                          "--metrics-addr", ""], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "another vcd daemon" in err[0] and "Traceback" not in out.stderr, out.stderr
    assert q.get_kv("autoseg_state") is None and q.get_kv("autoseg_runs") is None
    assert d.proc.poll() is None
