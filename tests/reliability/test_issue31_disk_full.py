"""Issue 31 item 2: a full disk. The daemon stays up, says once (log, ``vcdctl status``, ``/metrics``)
that the disk is full and where, pauses growth, retries with back-off and resumes by itself; every
command gives one line. ``.vcd/`` is a small tmpfs (needs root and ``mount``; skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth

PATCH = "auto_grown_20250101000000001"


@pytest.fixture
def small_state_disk(scroll_copy):
    """``<volpkg>/.vcd`` on an 8 MB tmpfs (lazily unmounted at teardown, after the daemons die)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    state = scroll_copy / ".vcd"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield state
    subprocess.run(["umount", "-l", str(state)], capture_output=True)


def _fill(folder):
    """Write a file until the disk is full; returns it."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError:
            pass
    return filler


def _ctl(vp, *argv):
    return subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(vp), *argv], capture_output=True,
                          text=True, timeout=600)


def test_full_disk_pauses_says_so_once_and_resumes(small_state_disk, daemon_factory, tmp_path):
    d = daemon_factory(workers=1).start()
    vp = d.volpkg
    q = d.queue()
    filler = _fill(small_state_disk)
    d.wait_for(lambda: d.events("disk_full"), "the disk_full log line")
    out = _ctl(vp, "submit", "sleep", "--param", "seconds=0.01")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "full" in lines[0] and "Traceback" not in out.stderr, out
    status = _ctl(vp, "status")
    assert status.returncode == 0 and "disk full" in status.stdout and "Traceback" not in status.stderr, status
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=30).read().decode()
    assert "vcd_disk_full 1.0" in metrics
    # a new patch arrives while the disk is full (made elsewhere on the volpkg's disk, moved in)
    t = load_truth(vp)
    staged = write_surface(tmp_path / "elsewhere" / PATCH, t.sample_grid(t.theta0 + 2, t.theta0 + 3, 20, 60, 4),
                           {"scale": [0.25, 0.25], "source": "vcd_grow", "area_cm2": 0.01})
    os.rename(staged, vp / "paths" / PATCH)
    filler.unlink()
    d.wait_for(lambda: d.events("disk_space_ok"), "the disk_space_ok log line")
    d.wait_for(lambda: any(j["state"] == "done" for j in q.list(kind="overlap")), "the new patch linked after the disk freed")
    assert len(d.events("disk_full")) == 1
    assert "Traceback" not in d.log_text() and d.proc.poll() is None
    assert "vcd_disk_full 0.0" in urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=30).read().decode()
