"""Issue 17 item 4: one rule, one function — the rules every package shares, checked on real files."""

import json

import numpy as np

from vcd.daemon.watcher import surface_fingerprint
from vcd.formats.provenance import PROVENANCE, provenance_patches, read_provenance
from vcd.formats.tifxyz import mask_fingerprint, read_meta, read_surface, write_mask, write_surface
from vcd.formats.volpkg import create_volpkg, is_prediction_name, is_volpkg, state_dir
from vcd.kernels.points import valid_mask, valid_quads
from vcd.trace.patches import PatchSet


def _grid() -> np.ndarray:
    yy, xx = np.mgrid[0:6, 0:8].astype(np.float32)
    return np.stack([xx * 5 + 10, yy * 5 + 10, np.full_like(xx, 30.0)], axis=-1)


def test_point_validity_is_x_not_minus_one_and_z_positive():
    g = _grid()
    g[0, 0] = -1          # written invalid
    g[1, 1, 2] = 0.0      # z <= 0 is invalid (VC3D's loader rule)
    g[2, 2, 1] = -1.0     # y == -1 alone is a valid coordinate
    v = valid_mask(g)
    assert not v[0, 0] and not v[1, 1] and v[2, 2] and v.sum() == 6 * 8 - 2
    q = valid_quads(v)
    assert q.shape == (5, 7) and not q[0, 0] and not q[1, 1] and not q[0, 1] and q[3, 3]


def test_volpkg_rules(tmp_path):
    vp = create_volpkg(tmp_path / "s.volpkg")
    assert is_volpkg(vp.path) and not is_volpkg(tmp_path) and not is_volpkg(vp.path / "paths")
    assert state_dir(vp.path) == vp.state_dir == vp.path / ".vcd"
    assert is_prediction_name("synth_pred.zarr") and is_prediction_name("surface_v2.zarr")
    assert not is_prediction_name("20230205180739.zarr")


def test_watcher_and_trace_record_the_same_mask_fingerprint(tmp_path):
    """The fingerprint the daemon's watcher stores and the ``mask_sha1`` a trace's provenance records
    for the same masked patch are the same value, so the two can be compared."""
    paths = tmp_path / "paths"
    patch = write_surface(paths / "auto_grown_20250101000000001", _grid(), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    keep = np.ones((6, 8), bool)
    keep[:, :2] = False
    write_mask(patch, keep)
    _, watched = surface_fingerprint(patch, read_meta(patch))
    ps = PatchSet.load(paths, warn=lambda m: None)
    assert watched is not None and ps.info[patch.name]["mask_sha1"] == watched == mask_fingerprint(patch)
    assert not read_surface(patch).valid[:, :2].any()
    keep[:, 2] = False  # an edit changes both
    write_mask(patch, keep)
    assert mask_fingerprint(patch) != watched == ps.info[patch.name]["mask_sha1"]
    assert PatchSet.load(paths, warn=lambda m: None).info[patch.name]["mask_sha1"] == mask_fingerprint(patch)


def test_provenance_reader(tmp_path):
    trace = tmp_path / "auto_trace_1"
    trace.mkdir()
    assert read_provenance(trace) is None and provenance_patches(None) == []
    (trace / PROVENANCE).write_text(json.dumps({"version": 1, "patches": {"b": {}, "a": {}}}))
    assert provenance_patches(read_provenance(trace)) == ["a", "b"]


def test_one_coercion_for_params_files_jobs_and_config(tmp_path):
    """GrowParams, TraceParams, FillParams, a job's own params and the daemon config coerce alike:
    integral numbers for ints, no booleans for numbers, "true"/"false" for booleans."""
    import pytest

    from vcd.daemon.config import load_config
    from vcd.errors import InputError
    from vcd.grow.params import GrowParams
    from vcd.jobs import get_spec
    from vcd.post.fusion import FillParams
    from vcd.trace.params import TraceParams

    assert GrowParams.from_dict({"generations": "12", "require_on_prediction_support": "true"}).generations == 12
    assert TraceParams.from_dict({"min_supporters": 3.0, "flip_x": "false"}).min_supporters == 3
    assert FillParams.from_dict({"opt_w": "5"}).opt_w == 5
    assert get_spec("sleep").parse({"seconds": "2"}).seconds == 2.0
    for build in (lambda v: GrowParams.from_dict({"generations": v}),
                  lambda v: TraceParams.from_dict({"min_supporters": v}),
                  lambda v: FillParams.from_dict({"opt_w": v})):
        for bad in (2.5, True, None, "wide"):
            with pytest.raises(InputError):
                build(bad)
    with pytest.raises(InputError):
        FillParams.from_dict({"dist_w": True})
    (tmp_path / "vcd.toml").write_text("[daemon]\nworkers = 2.5\n")
    with pytest.raises(InputError, match="workers"):
        load_config(tmp_path)


def test_one_rule_for_what_counts_as_a_trace(tmp_path):
    """Issue 28 item 3: ``list_traces`` is the one listing (autoseg, collection stats, ``vcd info``,
    previews, the status page): ``auto_trace_*`` or a tracer ``source``, in ``paths/`` (by name only:
    it may hold 10,000 patches) and ``traces/``, whole (x/y/z.tif + meta), not a debug snapshot; a
    trace stopped early is still a trace."""
    from vcd.formats.info import describe_volpkg
    from vcd.formats.volpkg import finished_traces, list_traces
    from vcd.post.coverage import collection_stats
    vp = create_volpkg(tmp_path / "s.volpkg")
    (vp.path / "traces").mkdir()
    write_surface(vp.path / "traces" / "auto_trace_1", _grid(), {"source": "vcd_trace"})
    write_surface(vp.path / "traces" / "auto_trace_2", _grid(), {"source": "vcd_trace", "vcd_incomplete": "interrupted"})
    write_surface(vp.path / "traces" / "vc_trace", _grid(), {"source": "vc_grow_seg_from_segments"})
    write_surface(vp.path / "paths" / "auto_trace_0", _grid(), {"source": "vc_grow_seg_from_segments"})
    write_surface(vp.path / "paths" / "z_dbg_gen_00010", _grid(), {"source": "vcd_trace"})
    write_surface(vp.path / "paths" / "auto_grown_patch", _grid(), {"source": "vcd_grow"})
    write_surface(vp.path / "traces" / "auto_trace_3", _grid(), {"source": "vcd_trace"})
    (vp.path / "traces" / "auto_trace_3" / "z.tif").unlink()      # not a whole surface
    names = [d.name for d, _ in list_traces(vp.path)]
    assert names == ["auto_trace_0", "auto_trace_1", "auto_trace_2", "vc_trace"]
    assert [d.name for d in finished_traces(vp.path)] == ["auto_trace_1", "vc_trace"]  # finished ones in traces/
    assert collection_stats(vp.path, 20)["traces"] == describe_volpkg(vp.path)["traces"] == 4


def test_patch_step_reads_only_the_first_patch(tmp_path, monkeypatch):
    """The patches' step comes from the first patch's meta.json: autoseg asks for it every tick, and
    reading every patch for it made a tick O(patches²) (36 s at 370 patches)."""
    import json
    from vcd.formats import volpkg
    for k in range(5):
        d = tmp_path / f"auto_grown_{k:04d}"
        d.mkdir()
        (d / "meta.json").write_text(json.dumps({"format": "tifxyz", "bbox": [[0, 0, 0], [1, 1, 1]],
                                                 "scale": [0.25, 0.25], "type": "seg"}))
    reads = []
    real = volpkg.read_json
    monkeypatch.setattr(volpkg, "read_json", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    assert volpkg.patch_step(tmp_path) == 4.0
    assert len(reads) == 1
    assert len(volpkg.list_patches(tmp_path)) == 5
