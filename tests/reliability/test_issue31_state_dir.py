"""Issue 31 item 4: deleting ``.vcd/`` under a running daemon. The daemon notices (its lock file or
database replaced) and stops with one line; a second daemon started meanwhile never runs beside it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from ..daemon.conftest import WAIT_CAP


def _first(log_path, event):
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event:
            return rec
    return None


def test_deleted_state_dir_stops_the_daemon_and_no_second_one_runs_beside_it(daemon_factory, tmp_path):
    d = daemon_factory(workers=1).start()
    vp = d.volpkg
    shutil.rmtree(vp / ".vcd")
    log_b = tmp_path / "second.log"
    b = subprocess.Popen([sys.executable, "-m", "vcd", "daemon", str(vp), "--metrics-addr", "", "--workers", "1",
                          "--log-format", "json"], stdout=open(log_b, "w"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    d.groups.append(b.pid)  # killed at teardown with the first one
    assert d.proc.wait(WAIT_CAP) == 1
    gone = d.events("state_dir_gone")
    assert len(gone) == 1 and ".vcd" in gone[0]["error"], gone
    assert "Traceback" not in d.log_text()
    stopped = d.events("daemon_stopped")[-1]["timestamp"]
    t0 = time.time()
    while not (_first(log_b, "daemon_started") or b.poll() is not None):
        assert time.time() - t0 < WAIT_CAP, "the second daemon neither started nor stopped"
        time.sleep(0.1)
    started = _first(log_b, "daemon_started")
    assert started is None or started["timestamp"] > stopped, (started, stopped)  # never two at once
    assert "Traceback" not in log_b.read_text()
