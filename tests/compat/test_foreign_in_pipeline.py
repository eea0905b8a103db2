"""Foreign patches in the pipeline: the daemon's watcher links them both ways, the tracer loads them."""

from __future__ import annotations

from vcd.daemon.config import load_config
from vcd.daemon.watcher import Watcher
from vcd.formats.overlaps import read_own_overlaps
from vcd.jobs import JobContext, run_job
from vcd.trace.patches import PatchSet


class _Log:
    def __getattr__(self, level):
        return lambda event, **kw: None


def test_watcher_links_foreign_patches_both_ways(two_foreign):
    vp, names, _ = two_foreign
    w = Watcher(vp, vp / ".vcd" / "vcd.sqlite", load_config(vp), _Log())
    w.previews.stop()
    for n in names:
        assert w.process(vp / "paths" / n)
    jobs = w.queue.list(kind="overlap")
    assert sorted(w.queue.get(j["id"])["params"]["segment"] for j in jobs) == names
    for j in jobs:
        run_job("overlap", w.queue.get(j["id"])["params"], JobContext(volpkg=vp))
    assert read_own_overlaps(vp / "paths" / names[0]) == {names[1]}
    assert read_own_overlaps(vp / "paths" / names[1]) == {names[0]}


def test_tracer_loads_foreign_patches(two_foreign):
    vp, names, _ = two_foreign
    ps = PatchSet.load(vp / "paths", warn=lambda m: None)
    assert sorted(ps.names) == names
