"""Issue 15 item 5: an ``approval.tif`` edit is a change like a ``mask.tif`` edit — the watcher's
decision queues a retrace of the traces that used the patch (in-process, no daemon)."""

import json

import numpy as np
import tifffile

from vcd.daemon.config import load_config
from vcd.daemon.watcher import Watcher, patch_jobs, surface_fingerprint
from vcd.formats.tifxyz import read_meta, write_mask, write_surface
from vcd.formats.volpkg import TRACE_SOURCES

from .test_decisions import _grid, _Log


def _approve(patch, rows):
    img = np.zeros((6, 8), np.uint8)
    img[rows] = 255
    tifffile.imwrite(patch / "approval.tif", img)


def test_approval_changes_the_fingerprint_and_the_decision(tmp_path):
    patch = tmp_path / "paths" / "auto_grown_20250101000000001"
    write_surface(patch, _grid(20.0), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    meta = read_meta(patch)
    tags, fp0 = surface_fingerprint(patch, meta)
    assert fp0 is None
    _approve(patch, slice(0, 2))
    _, fp1 = surface_fingerprint(patch, meta)
    _approve(patch, slice(0, 3))
    _, fp2 = surface_fingerprint(patch, meta)
    assert None != fp1 != fp2 and surface_fingerprint(patch, meta)[1] == fp2
    traces = [tmp_path / "traces" / "auto_trace_1"]
    old = {"tags": tags, "mask": fp1}
    assert patch_jobs(patch, old, tags, fp1, traces) == []
    assert [k for k, _ in patch_jobs(patch, old, tags, fp2, traces)] == ["retrace"]
    write_mask(patch, np.ones((6, 8), bool))  # mask and approvals are both in the fingerprint
    _, fp3 = surface_fingerprint(patch, meta)
    assert fp3 != fp2 and fp3.endswith(fp2.split("+")[1])


def test_watcher_retraces_on_an_approval_edit(tmp_path):
    vp = tmp_path / "a.volpkg"
    for d in ("paths", "traces"):
        (vp / d).mkdir(parents=True)
    w = Watcher(vp, vp / ".vcd" / "vcd.sqlite", load_config(vp), _Log())
    w.previews.stop()
    q = w.queue
    patch = vp / "paths" / "auto_grown_20250101000000001"
    write_surface(patch, _grid(20.0), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    assert w.process(patch)
    trace = vp / "traces" / "auto_trace_20250101000000002"
    write_surface(trace, _grid(21.0), {"source": sorted(TRACE_SOURCES)[0]}, scale=[0.2, 0.2])
    (trace / "vcd_provenance.json").write_text(json.dumps({"patches": {patch.name: {}}}))
    assert w.process(trace) and not q.list(kind="retrace")
    _approve(patch, slice(0, 2))
    assert w.process(patch)
    (rt,) = q.list(kind="retrace")
    assert q.get(rt["id"])["params"]["trace"] == str(trace)
    assert w.index.fingerprint(patch.name)["mask"].startswith("+approval:")
    tifffile.imwrite(patch / "approval.tif", np.zeros((3, 3), np.uint8))  # bad file: warned, no job
    assert w.process(patch) and len(q.list(kind="retrace")) == 1 and "bad_mask" in w.log.events
