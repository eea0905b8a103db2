"""Growth as notebooks and the daemon call it: grow_surface (in memory), and an expansion step through
the same jobs the daemon runs (``expand`` writes the patch, ``overlap`` links it)."""

import pickle

import numpy as np
import pytest

from vcd.errors import InputError
from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_surface, write_surface
from vcd.grow.linking import link_new_patch
from vcd.grow.run import grow_surface
from vcd.jobs import JobContext, run_job
from vcd.synth import load_truth
from vcd.synth.score import score_surface

PARAMS = {"generations": 25, "step_size": 5, "min_area_cm": 0.0001, "seed": 3}


def test_grow_surface_in_memory_explicit_and_random(scroll_copy):
    t = load_truth(scroll_copy)
    vol = scroll_copy / "volumes" / "synth_pred.zarr"
    pickle.dumps((vol, PARAMS, None))  # what a pool or Dask worker receives
    seed = t.point(t.theta0 + 0.55 * (t.theta1 - t.theta0), 48)
    s = grow_surface(vol, PARAMS, seed)
    sc = score_surface(s.points, t)
    assert sc["jumps"] == 0 and sc["mean_dist"] <= 1.0 and s.meta["area_cm2"] > 0
    r = grow_surface(vol, PARAMS)  # random seed, reproducible
    np.testing.assert_array_equal(r.points, grow_surface(vol, PARAMS).points)
    assert score_surface(r.points, t)["jumps"] == 0
    assert not list((scroll_copy / "paths").iterdir()) or all(p.name.startswith(".") for p in (scroll_copy / "paths").iterdir())
    with pytest.raises(InputError, match="nothing grown"):
        grow_surface(vol, PARAMS, (2.0, 2.0, 2.0))


def test_expansion_through_the_jobs_and_linking(scroll_copy):
    t = load_truth(scroll_copy)
    paths = scroll_copy / "paths"
    th = t.theta0 + 0.5 * (t.theta1 - t.theta0)
    write_surface(paths / "auto_grown_20250101000000001", t.sample_grid(th, th + 1.0, 20, 70, 5.0),
                  {"scale": [0.2, 0.2], "source": "vcd_grow"})
    write_surface(paths / "auto_grown_20250101000000002", t.sample_grid(th + 0.5, th + 1.5, 30, 80, 5.0),
                  {"scale": [0.2, 0.2], "source": "vcd_grow"})
    assert link_new_patch(paths, "auto_grown_20250101000000002") == ["auto_grown_20250101000000001"]
    assert read_overlaps(paths / "auto_grown_20250101000000001") == {"auto_grown_20250101000000002"}
    ctx = JobContext(volpkg=scroll_copy)
    res = run_job("expand", {**PARAMS, "volume": str(scroll_copy / "volumes" / "synth_pred.zarr"), "paths": str(paths)},
                  ctx)
    assert res["written"] and res["mode"] == "expansion"
    new = paths / res["written"]
    s = read_surface(new)
    assert score_surface(s.points, t)["jumps"] == 0 and s.meta["vc_gsfs_mode"] == "expansion"
    assert not read_overlaps(new)  # written unlinked: the overlap job is the one linker
    linked = run_job("overlap", {"paths": str(paths), "segment": new.name}, ctx)["linked"]
    assert res["source_patch"] in linked and read_overlaps(new) == set(linked)
    assert all(new.name in read_overlaps(paths / n) for n in linked)


def test_vcd_grow_in_expansion_mode_links_through_the_overlap_job(scroll_copy, tmp_path):
    """The foreground ``vcd grow`` in expansion mode links the new patch as VC3D does — through the
    same overlap job the daemon queues (source patch included)."""
    import json
    import subprocess
    import sys
    t = load_truth(scroll_copy)
    paths = scroll_copy / "paths"
    th = t.theta0 + 0.5 * (t.theta1 - t.theta0)
    write_surface(paths / "auto_grown_20250101000000001", t.sample_grid(th, th + 1.0, 20, 70, 5.0),
                  {"scale": [0.2, 0.2], "source": "vcd_grow"})
    params = tmp_path / "p.json"
    params.write_text(json.dumps({**PARAMS, "mode": "expansion"}))
    r = subprocess.run([sys.executable, "-m", "vcd", "grow", "-v", scroll_copy / "volumes" / "synth_pred.zarr",
                        "-t", paths, "-p", params], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    new = r.stdout.split("wrote ")[1].split()[0]
    assert read_overlaps(new) and "auto_grown_20250101000000001" in read_overlaps(new)
    assert r.stdout.strip().endswith(f"{len(read_overlaps(new))} overlaps")


def test_a_saturated_expansion_says_so_as_data(scroll_copy):
    """Issue 28 item 3: how a growth run ended is a GrowStop value in its result (``stop``), which the
    queue and the back-off read — never the ``reason`` sentence."""
    from vcd.formats.growresult import GrowStop, stop_of
    vp = scroll_copy
    res = run_job("expand", {**PARAMS, "volume": str(vp / "volumes" / "synth_pred.zarr"), "paths": str(vp / "paths")},
                  JobContext())
    assert res["written"] is None and stop_of(res) is GrowStop.SATURATED and res["stop"] == "saturated"
    res = run_job("seed", {**PARAMS, "volume": str(vp / "volumes" / "synth_pred.zarr"), "paths": str(vp / "paths")},
                  JobContext())
    assert res["written"] and stop_of(res) is GrowStop.WROTE
