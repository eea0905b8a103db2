"""The README's main command: `vcd demo` runs the whole pipeline through the real daemon, and says
truthfully why growth stopped (the scheduler's own rule) and how many patches reached the link target."""

import json
import re
import subprocess
import sys

import pytest

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


@pytest.mark.heavy  # ~3 CPU-minutes: zero-input autoseg on the embedded default scroll
def test_default_demo_is_zero_input_autoseg_scored_against_the_truth(tmp_path):
    """Issue 26 item 5: plain ``vcd demo`` runs zero-input autoseg and prints the run's own estimates
    next to the true coverage and switch, which agree with the report it wrote."""
    out = tmp_path / "demo.volpkg"
    p = subprocess.Popen([sys.executable, "-m", "vcd", "demo", "--out", str(out), "--shape", "64", "128", "128",
                          "--minutes", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=4 * WAIT_CAP)
    finally:
        kill_group(p.pid)
    assert p.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert not (out / "seed.json").exists() and (out / ".vcd" / "autoconf.json").exists()
    rep = json.loads((out / "traces" / "autoseg_report.json").read_text())
    true_cov = float(re.search(r"TRUE ([\d.]+) % of the sheet", stdout).group(1))
    true_sw = float(re.search(r"\| TRUE ([\d.]+) %\n", stdout).group(1))
    assert abs(true_cov - 100 * rep["truth"]["true_coverage"]) < 0.06
    assert abs(true_sw - 100 * rep["truth"]["true_switch_rate"]) < 0.0006
    assert "estimated" in stdout and "human input" in stdout
    assert rep["truth"]["true_switch_rate"] <= 0.005 and rep["truth"]["true_coverage"] > 0.3, rep["truth"]
