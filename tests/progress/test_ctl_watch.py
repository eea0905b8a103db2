"""`vcdctl watch` shows finished jobs per second and kind and each running job's message; Ctrl-C
exits 130 without a traceback (issue 16, item 6)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from vcd.cli.ctl import main as ctl
from vcd.daemon.queue import JobQueue

from ..conftest import sigint_default


def _jobs(vp):
    q = JobQueue.for_volpkg(vp)
    ids = [q.submit("sleep", {"seconds": 0, "marker": str(i)}) for i in range(5)]
    for i in range(4):
        job = q.claim("w1", kinds=["sleep"])
        q.complete(job["id"], {}) if i < 3 else q.fail(job["id"], "boom", retry=False)
    running = q.claim("w1", kinds=["sleep"])
    q.heartbeat(running["id"], 60, -1.0, "generation 5: 1200 corners, 80 corners/s")
    return q, ids


def test_watch_once_shows_rates_per_kind_and_running_messages(scroll_copy, capsys):
    q, ids = _jobs(scroll_copy)
    assert ctl(["--volpkg", str(scroll_copy), "watch", "--once", "--window", "60"]) == 0
    out = capsys.readouterr().out
    assert "rates (last 60 s): sleep 0.067 jobs/s (3 done, 1 failed)" in out or \
        "rates (last 60 s): sleep 0.067 jobs/s (1 failed, 3 done)" in out, out
    assert f"#{ids[4]} sleep" in out and "?  generation 5: 1200 corners, 80 corners/s" in out, out
    assert "-100%" not in out  # no target known: '?', not a negative percentage
    # outside the window nothing is counted
    q.db.execute("UPDATE jobs SET finished = finished - 600 WHERE state IN ('done', 'failed')")
    q.db.conn.commit()
    assert ctl(["--volpkg", str(scroll_copy), "watch", "--once", "--window", "60"]) == 0
    assert "rates (last 60 s): nothing finished" in capsys.readouterr().out


def test_watch_refreshes_until_ctrl_c_then_exits_130_quietly(scroll_copy):
    _jobs(scroll_copy)
    p = subprocess.Popen([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(scroll_copy), "watch",
                          "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=sigint_default)
    try:
        frames, deadline = 0, time.monotonic() + 120
        while frames < 2 and time.monotonic() < deadline:  # wait for two refreshes (event, generous cap)
            line = p.stdout.readline()
            frames += line.startswith("\x1b[2J\x1b[Hvcdctl watch")
        assert frames == 2
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 130 and "Traceback" not in err and err.strip() == "", err
