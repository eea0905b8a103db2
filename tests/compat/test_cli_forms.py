"""Both command lines of VC3D's tools: the tutorial's positional form and today's named form (issue 15 item 4)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trace.conftest import TRACE_PARAMS, link_all, seed_near, truth_patches
from vcd.formats.tifxyz import read_meta
from vcd.synth import load_truth

SMALL = dict(generations=15, step_size=5, min_area_cm=0.0001, seed=1)


def _vcd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, args)], capture_output=True, text=True)


def _written(r) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout.split("wrote ")[1].split()[0].rstrip(":")


def test_grow_named_and_positional_forms(scroll_copy, tmp_path):
    t = load_truth(scroll_copy)
    seed = t.point(t.theta0 + 0.55 * (t.theta1 - t.theta0), 48).tolist()
    params = tmp_path / "p.json"
    params.write_text(json.dumps(SMALL))
    vol, paths = scroll_copy / "volumes" / "synth_pred.zarr", scroll_copy / "paths"
    a = _written(_vcd("grow", "-v", vol, "-t", paths, "-p", params, "-s", *seed))
    b = _written(_vcd("grow", vol, paths, params, *seed))
    c = _written(_vcd("grow", "--volume", vol, "--target-dir", paths, "--params", params, "--seed", *seed))
    assert len({a, b, c}) == 3
    assert read_meta(a)["vc_gsfs_mode"] == read_meta(b)["vc_gsfs_mode"] == "explicit_seed"
    r = _vcd("grow", "-v", vol, "-p", params)
    assert r.returncode == 1 and "missing -t/--target-dir" in r.stderr
    r = _vcd("grow", "-v", vol, "-t", paths, "-p", params, "-s", *seed, *seed)
    assert r.returncode == 1 and r.stderr.count("error:") == 1  # extra numbers: one clear line


@pytest.fixture
def small_collection(scroll_copy):
    truth_patches(scroll_copy, 80, seed=1)
    link_all(scroll_copy)
    return scroll_copy


def test_trace_named_positional_and_resume(small_collection, tmp_path):
    vp = small_collection
    params = tmp_path / "t.json"
    params.write_text(json.dumps(dict(TRACE_PARAMS, max_generations=6, snapshot_every=0)))
    vol, paths, out = vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces"
    seed = paths / seed_near(vp, 8.0)
    a = _written(_vcd("trace", "-v", vol, "-s", paths, "-t", out, "-p", params, "--src-segment", seed))
    b = _written(_vcd("trace", vol, paths, out, params, seed))
    assert a != b and read_meta(a)["source"] == read_meta(b)["source"]
    c = _written(_vcd("trace", "--resume", a))
    assert read_meta(c)["retrace_of"] == a.rsplit("/", 1)[1]
    r = _vcd("trace", "-v", vol, "-s", paths, "-t", out, "-p", params)
    assert r.returncode == 1 and "missing --src-segment" in r.stderr
