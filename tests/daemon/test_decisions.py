"""Watcher and scheduler decisions, in-process and in milliseconds: the pure functions on plain data,
and ``Watcher.process`` on real surface files with a real queue file (no daemon, no observer, no waits)."""

import json
from pathlib import Path

import numpy as np

from vcd.daemon import backoff as bo
from vcd.daemon.config import ScheduleTable, load_config
from vcd.daemon.growth_plan import failure_storm, plan_growth, saturated
from vcd.daemon.watcher import Watcher, patch_jobs, trace_jobs
from vcd.formats.tifxyz import set_tag, write_mask, write_surface
from vcd.formats.volpkg import TRACE_SOURCES

SCHEDULE = ScheduleTable(seed_count=4, expand_queue=2, target_density=0.9, max_patches=100)
CALM = bo.backoff_state(bo.backoff_summary([]), 20, 30.0, 1800.0)


def _stats(patches, density=0.0):
    return {"patches": patches, "density": density}


def test_growth_plan_seeds_then_expands_until_density_or_saturation():
    assert plan_growth(SCHEDULE, {}, _stats(0), [], CALM, 0.0) == ["seed"] * 4
    assert plan_growth(SCHEDULE, {("seed", "running"): 3}, _stats(0), [], CALM, 0.0) == ["seed"]
    assert plan_growth(SCHEDULE, {("expand", "queued"): 1}, _stats(5, 0.5), [], CALM, 0.0) == ["expand"]
    assert plan_growth(SCHEDULE, {}, _stats(5, 0.95), [], CALM, 0.0) == []             # density reached
    assert plan_growth(SCHEDULE, {}, _stats(100, 0.1), [], CALM, 0.0) == []            # max_patches
    empty = [{"written": None, "reason": "collection saturated"}] * 4
    assert saturated(empty, 0) and not saturated(empty, 1) and not saturated(empty[:3], 0)
    assert not saturated([{"written": "auto_grown_1"}] + empty[:3], 0)
    assert plan_growth(SCHEDULE, {}, _stats(5, 0.5), empty, CALM, 0.0) == []


def test_growth_plan_under_back_off_sends_one_probe_after_the_wait():
    rows = [{"id": i, "state": "done", "result": {"written": None, "reason": "nothing grown"}, "finished": 100.0}
            for i in range(25, 0, -1)]
    state = bo.backoff_state(bo.backoff_summary(rows), 20, 30.0, 1800.0)
    assert state["active"] and state["next_at"] > 100.0
    assert plan_growth(SCHEDULE, {}, _stats(0), [], state, state["next_at"] - 1) == []
    assert plan_growth(SCHEDULE, {}, _stats(0), [], state, state["next_at"]) == ["seed"]
    assert plan_growth(SCHEDULE, {("seed", "running"): 1}, _stats(0), [], state, state["next_at"]) == []
    assert failure_storm({"failed": 3}) and not failure_storm({"failed": 3, "done": 1})
    assert not failure_storm({"failed": 2})


def test_patch_and_trace_decisions(tmp_path):
    p = tmp_path / "paths" / "auto_grown_1"
    (kind, params), = patch_jobs(p, None, [], None, [])
    assert kind == "overlap" and params.segment == "auto_grown_1" and params.paths == str(p.parent)
    old = {"tags": [], "mask": None}
    traces = [tmp_path / "traces" / "auto_trace_1", tmp_path / "traces" / "auto_trace_2"]
    assert patch_jobs(p, old, [], None, traces) == []  # our own writes change no fingerprint
    edits = patch_jobs(p, old, ["approved"], None, traces)
    assert [(k, Path(x.trace).name) for k, x in edits] == [("retrace", "auto_trace_1"), ("retrace", "auto_trace_2")]
    assert patch_jobs(p, old, [], "abc", traces, auto_retrace=False) == []
    assert trace_jobs(traces[0], tmp_path, ["winding"]) == [("winding", {"trace": str(traces[0]),
                                                                         "volpkg": str(tmp_path)})]


class _Log:
    def __init__(self):
        self.events = []

    def __getattr__(self, level):
        return lambda event, **kw: self.events.append(event)


def _grid(z0: float) -> np.ndarray:
    yy, xx = np.mgrid[0:6, 0:8].astype(np.float32)
    return np.stack([xx * 5 + 10, yy * 5 + 10, np.full_like(xx, z0)], axis=-1)


def test_watcher_process_turns_annotator_edits_into_jobs(tmp_path):
    vp = tmp_path / "a.volpkg"
    for d in ("paths", "traces"):
        (vp / d).mkdir(parents=True)
    cfg = load_config(vp, overrides={"pipeline": {"after_trace": ["winding"]}})
    w = Watcher(vp, vp / ".vcd" / "vcd.sqlite", cfg, _Log())
    w.previews.stop()  # no preview thread work in this test
    q = w.queue
    patch = vp / "paths" / "auto_grown_20250101000000001"
    write_surface(patch, _grid(20.0), {"source": "vcd_grow"}, scale=[0.2, 0.2])
    assert w.process(patch)
    (job,) = q.list(kind="overlap")
    assert q.get(job["id"])["params"]["segment"] == patch.name
    trace = vp / "traces" / "auto_trace_20250101000000002"
    write_surface(trace, _grid(21.0), {"source": sorted(TRACE_SOURCES)[0]}, scale=[0.2, 0.2])
    (trace / "vcd_provenance.json").write_text(json.dumps({"patches": {patch.name: {}}}))
    assert w.process(trace)
    assert w.index.traces_using(patch.name) == [trace.name] and len(q.list(kind="winding")) == 1
    assert w.process(patch) and w.process(trace) and len(q.list()) == 2  # nothing changed, nothing queued
    set_tag(patch, "approved")
    assert w.process(patch)
    (rt,) = q.list(kind="retrace")
    assert q.get(rt["id"])["params"]["trace"] == str(trace)
    keep = np.ones((6, 8), bool)
    keep[:2] = False
    write_mask(patch, keep)
    assert w.process(patch) and len(q.list(kind="retrace")) == 1  # the queued retrace covers it (dedup)
    assert w.index.fingerprint(patch.name)["mask"] is not None
    assert "retrace_queued" in w.log.events and "new_patch" in w.log.events


def test_daemon_max_attempts_reaches_the_jobs_the_watcher_queues(tmp_path):
    """Issue 28 item 4: ``[daemon] max_attempts`` is every daemon-queued job's; 0 (the default) keeps
    each kind's own retry policy."""
    vp = tmp_path / "a.volpkg"
    for d in ("paths", "traces"):
        (vp / d).mkdir(parents=True)
    for attempts, expected in ((5, 5), (0, 3)):  # overlap's own: Retry(max_attempts=3)
        w = Watcher(vp, vp / f"q{attempts}.sqlite", load_config(vp, overrides={"daemon": {"max_attempts": attempts}}),
                    _Log())
        w.previews.stop()
        patch = vp / "paths" / f"auto_grown_2025010100000000{attempts}"
        write_surface(patch, _grid(20.0), {"source": "vcd_grow"}, scale=[0.2, 0.2])
        assert w.process(patch)
        (job,) = w.queue.list(kind="overlap")
        assert w.queue.get(job["id"])["max_attempts"] == expected
