"""Issue 31 item 5: a corrupt ``.vcd/vcd.sqlite`` (truncated while the daemon was stopped) gives one line
naming the file and the fix from ``vcd daemon`` and ``vcdctl status``; ``vcdctl repair`` moves it aside
(never deletes it) and rebuilds the queue from ``paths/`` and ``traces/``."""

from __future__ import annotations

import os
import subprocess
import sys

from vcd import jobs

from ..daemon.test_daemon import put_patch

PATCH = "auto_grown_20250101000000001"


def _run(*argv):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=600)


def _one_line(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out
    return lines[0]


def test_corrupt_database_one_line_then_repair_rebuilds_it(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg
    put_patch(vp, PATCH, 2.0, 3.0, 20, 60)
    q = d.queue()
    for i in range(400):  # enough pages that a cut leaves the file malformed
        jobs.submit(q, "sleep", {"seconds": 0.01, "marker": f".vcd/marker-{i:04d}-" + "x" * 200})
    q.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    q.close()
    db = vp / ".vcd" / "vcd.sqlite"
    os.truncate(db, db.stat().st_size // 2)

    line = _one_line(_run("vcd", "daemon", str(vp), "--metrics-addr", ""))
    assert "vcd.sqlite" in line and "vcdctl --volpkg" in line and "repair" in line, line
    line = _one_line(_run("vcd.cli.ctl", "--volpkg", str(vp), "status"))
    assert "vcd.sqlite" in line and "vcdctl --volpkg" in line and "repair" in line, line

    out = _run("vcd.cli.ctl", "--volpkg", str(vp), "repair")
    assert out.returncode == 0 and "Traceback" not in out.stderr + out.stdout, out
    kept = [p for p in (vp / ".vcd").iterdir() if p.name.startswith("vcd.sqlite.damaged-")]
    assert len(kept) == 1 and kept[0].stat().st_size > 0, kept  # kept aside, never deleted
    rebuilt = d.queue()
    overlap = rebuilt.list(kind="overlap")
    assert [j["state"] for j in overlap] == ["queued"], overlap  # the patch is linked again from paths/
    d.start()  # and a daemon runs on the rebuilt state
    d.wait_for(lambda: rebuilt.list(kind="overlap")[0]["state"] == "done", "the rebuilt queue's overlap job")
    assert _run("vcd.cli.ctl", "--volpkg", str(vp), "status").returncode == 0
