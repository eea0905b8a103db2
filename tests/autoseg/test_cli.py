"""``vcd autoseg`` and the daemon's ``[autoseg]`` mode end to end on a small synthetic scroll, scored
against the ground truth (the numbers the report prints are recomputed independently here)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vcd.daemon.queue import JobQueue
from vcd.formats.tifxyz import read_surface
from vcd.synth import load_truth
from vcd.synth.score import coverage, score_surface

from ..daemon.conftest import WAIT_CAP, Daemon, kill_group


def _start(volpkg, minutes=6.0):
    return subprocess.Popen([sys.executable, "-m", "vcd", "autoseg", str(volpkg), "--minutes", str(minutes)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait(cond, what, proc=None, cap=WAIT_CAP):
    t0 = time.time()
    while time.time() - t0 < cap:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"autoseg exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {cap:.0f} s")


def _independent(volpkg, report):
    """Switch share and coverage of the report's final sheets by vcd.synth.score directly."""
    truth = load_truth(volpkg)
    grids = [read_surface(volpkg / "traces" / s["name"]).points for s in report["final_sheets"]]
    scores = [score_surface(g, truth) for g in grids]
    n = sum(s["n_valid"] for s in scores)
    switch = sum(s["n_valid"] * (1 - s["jump_free_fraction"]) for s in scores) / n
    return switch, coverage(grids, truth, tol=2.0), scores


@pytest.mark.heavy  # ~2 CPU-minutes; bench/autoseg.py measures the same on a larger scroll
def test_autoseg_covers_a_small_scroll_and_reports_true_numbers(autoseg_copy):
    vp = autoseg_copy
    p = _start(vp)
    try:
        out, err = p.communicate(timeout=4 * WAIT_CAP)
    finally:
        kill_group(p.pid)
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    assert "Traceback" not in err and "TRUE coverage" in out
    rep = json.loads((vp / "traces" / "autoseg_report.json").read_text())
    assert (vp / "traces" / "autoseg_report.md").exists() and (vp / "traces" / "autoseg_timing.csv").exists()
    assert rep["status"] == "done" and rep["human_hours"] == 0 and rep["final_sheets"]
    assert rep["stages"]["tracing"]["jobs"] >= 1 and rep["stages"]["growth"]["cpu_s"] > 0
    switch, cov, scores = _independent(vp, rep)
    t = rep["truth"]
    assert abs(t["true_switch_rate"] - switch) < 1e-9
    assert abs(t["true_coverage"] - cov) < 0.03, (t["true_coverage"], cov)  # same-wrap rule vs any-wrap rule
    # the medium preset at this size: the sheets stay on their wrap, and cover a good part of the scroll
    assert t["true_switch_rate"] <= 0.005 and t["true_coverage"] > 0.3, t
    assert all(s["mean_dist"] < 1.5 for s in scores)
    # the accepted-area masks: every gated trace has a record, cut ones a mask.tif that keeps their kept part
    for name, g in rep["gates"].items():
        d = vp / "traces" / name
        assert (d / "autoseg_qa.json").exists() and json.loads((d / "meta.json").read_text())["vcd_autoseg"]
        final = json.loads((d / "meta.json").read_text()).get("vcd_autoseg_final")
        if final:  # a final sheet: the gate's cut, then tiling and self-contact cuts (finish_sheets)
            assert int(read_surface(d).valid.sum()) == final["kept_px"] <= g["kept_px"]
        elif g["cut_px"]:
            assert int(read_surface(d).valid.sum()) == g["kept_px"]


@pytest.mark.heavy
def test_kill9_resumes_and_ctrl_c_exits_130(autoseg_copy):
    vp = autoseg_copy
    p = _start(vp)
    try:
        _wait(lambda: len(list((vp / "paths").glob("auto_grown_*"))) >= 8, "8 patches", p)
        p.kill()  # kill -9 of the command (its workers finish their job and exit: they watch their parent)
        p.wait()
        grown = {d.name for d in (vp / "paths").glob("auto_grown_*")}
        p = _start(vp)
        q = JobQueue.for_volpkg(vp)
        _wait(lambda: any(j["state"] == "done" for j in q.list(kind="trace")), "a trace", p)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=WAIT_CAP)
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, out + err
        rep = json.loads((vp / "traces" / "autoseg_report.json").read_text())
        assert rep["status"] == "interrupted" and rep["runs"] == 2
        p = _start(vp)
        out, err = p.communicate(timeout=4 * WAIT_CAP)
        assert p.returncode == 0, out + err
    finally:
        kill_group(p.pid)
    rep = json.loads((vp / "traces" / "autoseg_report.json").read_text())
    assert rep["status"] == "done" and rep["runs"] == 3
    assert grown <= {d.name for d in (vp / "paths").glob("auto_grown_*")}  # nothing grown before is lost
    assert rep["truth"]["true_switch_rate"] <= 0.005 and rep["truth"]["true_coverage"] > 0.3


@pytest.mark.heavy  # ~1 CPU-minute; autoseg's parts are checked in test_plan.py / test_prize.py
def test_daemon_mode_traces_gates_and_reports(autoseg_copy):
    vp = autoseg_copy
    toml = (vp / "vcd.toml").read_text().replace("[autoseg]\n", "[autoseg]\nenabled = true\n")
    d = Daemon(vp, toml)
    try:
        d.start()
        q = d.queue()
        d.wait_for(lambda: (q.get_kv("autoseg_state", {}) or {}).get("done"), "autoseg done", cap=4 * WAIT_CAP)
        d.wait_for(lambda: (vp / "traces" / "autoseg_report.json").exists(), "the report")
        assert d.stop() == 0
    finally:
        d.kill_all()
    rep = json.loads((vp / "traces" / "autoseg_report.json").read_text())
    assert rep["status"] == "done" and rep["final_sheets"] and rep["truth"] is None  # the daemon does not score
    assert all(g["status"] in ("accepted", "rejected") for g in rep["gates"].values())
    assert d.events("autoseg_gate_queued") and d.events("autoseg_done")
    gates = d.queue().list(kind="gate")  # the QA gate ran in workers, one job per trace
    assert gates and all(j["state"] == "done" for j in gates) and len(gates) >= len(rep["gates"])
    truth = load_truth(vp)
    for s in rep["final_sheets"]:
        sc = score_surface(read_surface(vp / "traces" / s["name"]).points, truth)
        assert sc["jump_free_fraction"] > 0.99 and np.isfinite(sc["mean_dist"])
        # every final sheet got its winding job before "done": the wraps it spans, near the truth's span
        assert (vp / "traces" / s["name"] / "winding.png").exists() and s["wraps"] is not None, s
        assert abs(s["wraps"] - sc["wraps_covered"]) < 0.35 + 0.2 * sc["wraps_covered"], (s, sc)
    assert d.events("autoseg_winding_queued")


@pytest.mark.heavy  # ~3 CPU-minutes: a zero-input run killed and resumed
def test_zero_input_kill9_resumes_on_the_same_plan(tmp_path):
    """Issue 26: a volpkg as it arrives (only ``volumes/``), ``vcd autoseg`` killed with kill -9 after its
    first patches and started again: the second run keeps the measured plan (same ``created`` stamp, no
    second measurement), loses no patch, and finishes on one sheet per wrap."""
    from vcd.synth import make_scroll
    vp = make_scroll(tmp_path / "arrived.volpkg", shape=(64, 128, 128), preset="medium", seed=0)
    assert not any((vp / n).exists() for n in ("seed.json", "expand.json", "trace_params.json", "vcd.toml"))
    plan_path = vp / ".vcd" / "autoconf.json"
    p = _start(vp)
    try:
        _wait(lambda: len(list((vp / "paths").glob("auto_grown_*"))) >= 4, "4 patches", p)
        p.kill()
        p.wait()
        kill_group(p.pid)  # its workers too: a kill -9 of the whole session, as a crash would leave it
        plan = json.loads(plan_path.read_text())
        grown = {d.name for d in (vp / "paths").glob("auto_grown_*")}
        p = _start(vp)
        out, err = p.communicate(timeout=4 * WAIT_CAP)
        assert p.returncode == 0, out[-3000:] + err[-3000:]
    finally:
        kill_group(p.pid)
    assert json.loads(plan_path.read_text())["created"] == plan["created"]  # resumed on the same measured plan
    rep = json.loads((vp / "traces" / "autoseg_report.json").read_text())
    assert rep["status"] == "done" and rep["runs"] == 2 and rep["final_sheets"]
    assert grown <= {d.name for d in (vp / "paths").glob("auto_grown_*")}
    assert rep["truth"]["true_switch_rate"] <= 0.005 and rep["truth"]["true_coverage"] > 0.3, rep["truth"]
