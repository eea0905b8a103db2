"""Ctrl-C in the long foreground commands (issue 16, item 3): ``vcd trace`` and ``vcd render`` exit 130
with the one line ``interrupted`` and no traceback, and leave only whole files behind — the trace its
partial result (a complete tifxyz marked ``vcd_incomplete``), the render the layers it finished (no
half-written layer, no ``.part`` file). ``vcd grow`` is covered in
``tests/daemon/test_daemon.py::test_ctrl_c_in_a_foreground_command_is_one_line_and_130``.

Ctrl-C in a terminal signals the whole foreground process group (render's pool workers included), so
the command runs in its own session and the test signals that group. It waits for the event — the
command's first progress line on stderr — never for a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from vcd.formats.tifxyz import read_surface, write_surface
from vcd.grow.linking import link_new_patch
from vcd.synth import load_truth

from ..daemon.conftest import WAIT_CAP, kill_group
from ..conftest import sigint_default


def _interrupt_after_first_progress(args, cwd):
    """Run ``vcd ARGS`` in its own session, SIGINT its group at the first ``[ x%]`` progress line;
    returns (returncode, stderr lines other than progress lines, whether progress was seen)."""
    p = subprocess.Popen([sys.executable, "-m", "vcd", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True,
                         preexec_fn=sigint_default)
    try:
        seen = []
        for line in p.stderr:
            seen.append(line.rstrip("\n"))
            if line.lstrip().startswith("["):
                os.killpg(p.pid, signal.SIGINT)
                break
        _, err = p.communicate(timeout=WAIT_CAP)
    finally:
        kill_group(p.pid)
    lines = seen + err.splitlines()
    return p.returncode, [ln for ln in lines if not ln.lstrip().startswith("[")], any(
        ln.lstrip().startswith("[") for ln in seen)


def test_ctrl_c_during_trace_keeps_the_partial_result_and_exits_130(scroll_copy, tmp_path):
    vp = scroll_copy
    t = load_truth(vp)
    rng = np.random.default_rng(5)
    names = []
    for i in range(200):  # a dense collection over a wrap and a half: ~2 s of tracing after generation 1
        th = rng.uniform(3, 12)
        z0 = rng.uniform(5, 45)
        names.append(write_surface(vp / "paths" / f"auto_grown_2025010100{i:07d}",
                                   t.sample_grid(t.theta0 + th, t.theta0 + th + 1.5, z0, z0 + 45, 4),
                                   {"scale": [0.25, 0.25], "source": "vcd_grow", "area_cm2": 0.01}).name)
    for n in names:
        link_new_patch(vp / "paths", n)
    params = tmp_path / "trace.json"
    params.write_text(json.dumps({"step": 1, "src_step": 4, "consensus_default_th": 4, "inlier_base_threshold": 8,
                                  "global_steps_per_window": 3, "snapshot_every": 0}))
    rc, lines, progressed = _interrupt_after_first_progress(
        ["trace", vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces", params, vp / "paths" / names[0]],
        tmp_path)
    assert progressed
    assert rc == 130 and lines[-1] == "interrupted", (rc, lines)
    assert not [ln for ln in lines if "Traceback" in ln or "Error" in ln], lines
    kept = [d for d in (vp / "traces").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(kept) == 1, kept  # interrupted after generation 1: enough corners to keep
    for d in kept:  # the documented partial output: a whole surface that says it is incomplete
        s = read_surface(d)
        assert s.meta.get("vcd_incomplete", "").startswith("crashed: KeyboardInterrupt"), s.meta
        assert any(f"partial result kept in {vp / 'traces' / d.name}" in ln for ln in lines), lines


def test_ctrl_c_wrapped_by_numba_is_recorded_as_an_interrupt(scroll_copy, tmp_path):
    """A Ctrl-C that numba hands back as ``SystemError: ... returned a result with an exception set`` (the
    KeyboardInterrupt its cause; a clean-clone run hit it once in ``closest_per_surface``) is written into
    the partial trace as an interrupt, not as a crash of another kind."""
    from vcd.trace.run import run_trace
    vp = scroll_copy
    t = load_truth(vp)
    names = [write_surface(vp / "paths" / f"auto_grown_2025010100{i:07d}",
                           t.sample_grid(t.theta0 + 3 + 0.8 * i, t.theta0 + 4.6 + 0.8 * i, 5, 50, 4),
                           {"scale": [0.25, 0.25], "source": "vcd_grow", "area_cm2": 0.01}).name for i in range(8)]
    for n in names:
        link_new_patch(vp / "paths", n)

    def interrupted_in_a_kernel(fraction, message):
        if message.startswith("generation"):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise SystemError("CPUDispatcher(<function k>) returned a result with an exception set")
    with pytest.raises(SystemError):
        run_trace(vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces",
                  {"step": 1, "src_step": 4, "consensus_default_th": 4, "inlier_base_threshold": 8, "snapshot_every": 0},
                  vp / "paths" / names[0], progress=interrupted_in_a_kernel, warn=lambda m: None)
    kept = [d for d in (vp / "traces").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(kept) == 1, kept
    assert read_surface(kept[0]).meta["vcd_incomplete"] == "crashed: KeyboardInterrupt"


def test_ctrl_c_during_render_leaves_only_whole_layers_and_exits_130(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    seg = write_surface(tmp_path / "seg", t.sample_grid(t.theta0 + 1.0, t.theta0 + 1.0 + 8 * np.pi, 5, 90, 2),
                        {"scale": [0.5, 0.5]})
    out = tmp_path / "layers"
    rc, lines, progressed = _interrupt_after_first_progress(
        ["render", medium_scroll / "volumes" / "synth_ct.zarr", f"{out}/%02d.tif", seg, 2, 0, 21], tmp_path)
    assert progressed
    assert rc == 130 and lines == ["interrupted"], (rc, lines)
    files = sorted(out.iterdir()) if out.exists() else []
    assert not [f for f in files if f.name.endswith(".part")], files
    shapes = {tifffile.imread(f).shape for f in files if f.suffix == ".tif"}
    assert len(shapes) <= 1, shapes  # every layer that exists is whole


@pytest.fixture(autouse=True)
def _no_stray_sigint_handler():
    """These tests signal another session only; make sure pytest's own SIGINT handling is untouched."""
    before = signal.getsignal(signal.SIGINT)
    yield
    assert signal.getsignal(signal.SIGINT) is before
