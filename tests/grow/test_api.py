"""The library API the daemon calls (issue 3 item 4): grow_patch, expand_once, link_overlaps."""

import pickle

import numpy as np
import pytest

from vcd.errors import InputError
from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_surface, write_surface
from vcd.grow.api import expand_once, grow_patch, link_overlaps
from vcd.synth import load_truth
from vcd.synth.score import score_surface

PARAMS = {"generations": 25, "step_size": 5, "min_area_cm": 0.0001, "seed": 3}


def test_grow_patch_in_memory_explicit_and_random(scroll_copy):
    t = load_truth(scroll_copy)
    vol = scroll_copy / "volumes" / "synth_pred.zarr"
    pickle.dumps((vol, PARAMS, None))  # what a pool or Dask worker receives
    seed = t.point(t.theta0 + 0.55 * (t.theta1 - t.theta0), 48)
    s = grow_patch(vol, PARAMS, seed)
    sc = score_surface(s.points, t)
    assert sc["jumps"] == 0 and sc["mean_dist"] <= 1.0 and s.meta["area_cm2"] > 0
    r = grow_patch(vol, PARAMS)  # random seed, reproducible
    np.testing.assert_array_equal(r.points, grow_patch(vol, PARAMS).points)
    assert score_surface(r.points, t)["jumps"] == 0
    assert not list((scroll_copy / "paths").iterdir()) or all(p.name.startswith(".") for p in (scroll_copy / "paths").iterdir())
    with pytest.raises(InputError, match="nothing grown"):
        grow_patch(vol, PARAMS, (2.0, 2.0, 2.0))


def test_expand_once_and_link_overlaps(scroll_copy):
    t = load_truth(scroll_copy)
    paths = scroll_copy / "paths"
    th = t.theta0 + 0.5 * (t.theta1 - t.theta0)
    write_surface(paths / "auto_grown_20250101000000001", t.sample_grid(th, th + 1.0, 20, 70, 5.0),
                  {"scale": [0.2, 0.2], "source": "vcd_grow"})
    write_surface(paths / "auto_grown_20250101000000002", t.sample_grid(th + 0.5, th + 1.5, 30, 80, 5.0),
                  {"scale": [0.2, 0.2], "source": "vcd_grow"})
    assert link_overlaps(paths, "auto_grown_20250101000000002") == {"auto_grown_20250101000000001"}
    assert read_overlaps(paths / "auto_grown_20250101000000001") == {"auto_grown_20250101000000002"}
    new = expand_once(scroll_copy, PARAMS)
    assert new is not None and new.parent == paths
    s = read_surface(new)
    assert score_surface(s.points, t)["jumps"] == 0 and s.meta["vc_gsfs_mode"] == "expansion"
    links = read_overlaps(new)
    assert links and all(new.name in read_overlaps(paths / n) for n in links)
