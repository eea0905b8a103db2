"""Reproducible by default (issue 27, item 4): the same seed point and params give the same patch,
bit for bit, in separate processes, with no ``seed`` param — the growth's random choices (the seed
quad's rotation) come from a generator seeded by the start point (:func:`vcd.grow.run.point_rng`).
Before, an unseeded run drew them from the clock: three runs from one point gave 354, 308 and 311
corners."""

import json
import subprocess
import sys

import numpy as np

from vcd.formats.tifxyz import read_surface
from vcd.grow.run import point_rng
from vcd.synth import load_truth

from .test_realistic import spread_seeds


def _grow_cli(vol, paths, params, seed):
    r = subprocess.run([sys.executable, "-m", "vcd", "grow", str(vol), str(paths), str(params),
                        *(repr(float(v)) for v in seed)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def test_same_point_same_params_same_patch_in_separate_processes(scroll_copy, tmp_path):
    t = load_truth(scroll_copy)
    seed = spread_seeds(t, n=1, margin=25)[0]
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"generations": 12, "step_size": 6, "min_area_cm": 1e-6}))  # no "seed"
    vol = scroll_copy / "volumes" / "synth_pred.zarr"
    pts = []
    for sub in ("a", "b"):
        d = scroll_copy / sub
        d.mkdir()
        _grow_cli(vol, d, params, seed)
        (name,) = [p for p in d.iterdir() if p.name.startswith("auto_grown_")]
        pts.append(read_surface(name).points)
    assert (pts[0] != -1).any()
    np.testing.assert_array_equal(pts[0], pts[1])


def test_point_rng_depends_on_the_point_and_the_seed_only():
    p = np.array([10.25, 20.5, 30.0])
    assert point_rng(p).integers(1 << 62) == point_rng(p.copy()).integers(1 << 62)
    assert point_rng(p).integers(1 << 62) != point_rng(p + [0, 0, 1e-9]).integers(1 << 62)
    assert point_rng(p, 3).integers(1 << 62) == point_rng(p, 3).integers(1 << 62)
    assert point_rng(p, 3).integers(1 << 62) != point_rng(p).integers(1 << 62)


def test_same_patch_whatever_the_field_has_loaded(tmp_path):
    """What a run reads never depends on what an earlier run (or the daemon's earlier job) loaded: the
    field is loaded around the growth front as far as the band tests read, so a cold field, one that
    holds the whole volume and one warmed by another patch give the same patch, bit for bit, and the
    same refusal counts."""
    from vcd.formats.volume import open_volume
    from vcd.grow.distance import DistanceField
    from vcd.grow.grower import grow_patch
    from vcd.synth import make_scroll

    vp = make_scroll(tmp_path / "r.volpkg", (96, 192, 192), preset="realistic", seed=6, ct=False, fused_family=True)
    t = load_truth(vp)
    level = open_volume(vp / "volumes" / "synth_pred.zarr").levels[0]
    a, b = spread_seeds(t, n=2, margin=30)
    runs = []
    for warm in ("cold", "all", "other patch"):
        field = DistanceField(level)
        if warm == "all":
            field.ensure_all()
        elif warm == "other patch":
            grow_patch(field, b, 6.0, 20, rng=point_rng(b))
        runs.append(grow_patch(field, a, 6.0, 20, rng=point_rng(a)))
    assert runs[0].n_corners > 30
    for r in runs[1:]:
        np.testing.assert_array_equal(r.points, runs[0].points)
        assert r.refusals == runs[0].refusals and r.audit == runs[0].audit
