"""Accelerated soak: a team's daily event mix replayed against the real daemon; memory stays flat.

One *cycle* is 15 simulated minutes of a team's day; the heavy variant runs 96 cycles = 24 hours
(the CI variant 12 cycles = 3 hours).
Per cycle (parameters ``new``, ``retrace_every``): ``new`` patches appear in ``paths/`` (sampled
from the synthetic ground truth, as a grower or a copy would write them) and, once the churn pool is
big enough, as many of the oldest are deleted (the collection stays about the same size, so growth of
memory would be a leak, not data); one ``mask.tif`` is replaced (GIMP-style) and the
``approved`` and ``defective`` tags are toggled (VC3D-style tmp + rename of ``meta.json``) on
patches the current trace does not use (new patches land half near the traced region, half in a
region no trace reaches); and every ``retrace_every`` cycles one more edit (mask or ``approved``) hits
a patch the current trace used, so the daemon retraces it and the next cycle edits the new trace's
patches. Heavy: 96 cycles × (4 new, 4 deleted, 1–2 masks, 2–3 tags, 1 retrace) = per simulated
hour 16 new and 16 deleted patches, ~6 mask saves, ~10 tag edits, 4 retraces. Time is compressed by
shortening the scheduler's periods: reconcile (a full rescan of ``paths/``) every 5 s instead of
60 s, housekeeping every second, debounce 0.2 s; a cycle waits until the queue is drained, then
samples the RSS of the daemon and its workers (and the daemon's open files and threads).

Warm-up (numba caches loaded, tracer imported in both workers, previews drawn) happens before the
first cycle: two trace jobs run at once, one per worker. Flat memory means: the least-squares slope
of RSS over the second half of the cycles is below ``slope_mib`` per cycle, and the peak of the
last quarter is at most ``growth`` above the peak of the first quarter.
"""

import json
import os
import random
import shutil
import time

import numpy as np
import pytest

from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_surface, write_mask, write_surface
from vcd.grow.linking import link_new_patch
from vcd.synth import load_truth

from ..daemon.conftest import WAIT_CAP
from .events import watcher_saw
from .rss import MIB, RssSampler, slope_per_step
from .test_faults import _symmetric_valid_links

SOAK_CONFIG = """
[schedule]
expansion = false
reconcile_seconds = 5
housekeeping_seconds = 1
[daemon]
lease_seconds = 10
shutdown_timeout = 5
debounce_seconds = 0.2
"""

TRACE_PARAMS = {"step": 2, "src_step": 4, "consensus_default_th": 4, "inlier_base_threshold": 8}


def _patch(vp, t, rng, name, far=False):
    """A patch near the traced region (theta0 + 3..9), or ``far`` from it (a separate region no trace reaches)."""
    th = rng.uniform(t.theta0 + 12, t.theta0 + 18) if far else rng.uniform(t.theta0 + 3, t.theta0 + 9)
    z0 = rng.uniform(5, 45)
    return write_surface(vp / "paths" / name, t.sample_grid(th, th + 0.9, z0, z0 + 40, 4),
                         {"scale": [0.25, 0.25], "source": "vcd_grow", "area_cm2": 0.01})


def _vc3d_toggle_tag(pd, tag):
    """What VC3D does when a box is ticked: read meta.json, edit, write tmp, rename (no lock)."""
    meta = json.loads((pd / "meta.json").read_text())
    tags = meta.setdefault("tags", {})
    if tag in tags:
        del tags[tag]
    else:
        tags[tag] = {"user": "soak"}
    (pd / "meta.json.tmp").write_text(json.dumps(meta, indent=4))
    os.replace(pd / "meta.json.tmp", pd / "meta.json")


def _gimp_mask(pd, k):
    shape = read_surface(pd, apply_mask=False).shape
    keep = np.full(shape, 255, np.uint8)
    keep[: 1 + k % 3, : 1 + k % 4] = 0
    write_mask(pd, keep)


def _count(q, sql, *args):
    return q.conn.execute(sql, args).fetchone()[0]


def _drained(d, q, touched=()):
    """Wait for the events: the watcher has acted on every surface ``touched`` this cycle, then every
    job is final (three quiet polls in a row, so a retrace's new trace is recorded too)."""
    vp = d.volpkg
    d.wait_for(lambda: watcher_saw(q, vp, touched), "the watcher acting on this cycle's edits")
    quiet = [0]

    def settled():
        busy = _count(q, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued','running')")
        quiet[0] = quiet[0] + 1 if not busy else 0
        time.sleep(0.15)
        return quiet[0] >= 3
    d.wait_for(settled, "queue drained")


def _latest_trace(vp):
    traces = sorted(p for p in (vp / "traces").iterdir() if p.name.startswith("auto_trace_")
                    and (p / "vcd_provenance.json").exists())
    return traces[-1]


@pytest.mark.parametrize("cycles,new,retrace_every,slope_mib,growth", [
    (12, 2, 4, 1.5, 0.20),
    pytest.param(int(os.environ.get("VCD_SOAK_CYCLES", "96")), 4, 1, 0.25, 0.10, marks=pytest.mark.heavy),
])
def test_soak_daily_event_mix_keeps_memory_flat(daemon_factory, cycles, new, retrace_every, slope_mib, growth):
    d = daemon_factory(SOAK_CONFIG)
    vp = d.volpkg
    t = load_truth(vp)
    rng = np.random.default_rng(8)
    rnd = random.Random(8)
    serial = iter(range(10 ** 9))

    def name():
        return f"auto_grown_2025010100{next(serial):07d}"
    core = [_patch(vp, t, rng, name(), far=i >= 30).name for i in range(40)]
    for n in core:  # an existing, linked collection
        link_new_patch(vp / "paths", n)
    seed = core[0]
    d.start()
    q = d.queue()
    tp = dict(TRACE_PARAMS, volume=str(vp / "volumes" / "synth_pred.zarr"), src_dir=str(vp / "paths"),
              tgt_dir=str(vp / "traces"), seed=str(vp / "paths" / seed))
    warm = [q.submit("trace", tp) for _ in range(2)]  # one per worker: both import and load the tracer
    d.wait_for(lambda: all(q.get(i)["state"] in ("done", "failed") for i in warm), "warm-up traces")
    assert all(q.get(i)["state"] == "done" for i in warm), [q.get(i)["error"] for i in warm]
    _drained(d, q)
    keep = _latest_trace(vp)
    for p in (vp / "traces").iterdir():  # a trace deleted by a person: nothing breaks
        if p != keep and p.is_dir():
            shutil.rmtree(p)
    churn: list[str] = []
    counts = {"new": 0, "deleted": 0, "mask": 0, "tags": 0, "retrace_triggers": 0}
    rss_daemon, rss_total, cycle_s, fds, threads = [], [], [], [], []
    with RssSampler(d.proc.pid) as rss:
        for c in range(cycles):
            tc = time.time()
            touched: list[str] = []
            trace = _latest_trace(vp)
            d.wait_for(lambda: q.fingerprint(trace.name) is not None, "trace recorded")
            used = set(json.loads((trace / "vcd_provenance.json").read_text())["patches"])
            pool = [n for n in core + churn if n not in used and n != seed]
            for i in range(new):  # half near the trace (the next retrace may use them), half elsewhere
                churn.append(_patch(vp, t, rng, name(), far=bool(i % 2)).name)
                touched.append(churn[-1])
                counts["new"] += 1
            # deletions: the oldest churn patches, used by the trace or not (the collection stays the same size)
            victims = churn[: new] if len(churn) > 6 * new else []
            for n in victims:
                shutil.rmtree(vp / "paths" / n)
                churn.remove(n)
                counts["deleted"] += 1
            pool = [n for n in pool if n not in victims] or [n for n in core + churn if n != seed]
            alive = sorted(n for n in used - {seed} if (vp / "paths" / n).is_dir())  # not deleted meanwhile
            if c % retrace_every == retrace_every - 1 and alive:  # an edit the current trace depends on
                target = rnd.choice(alive)
                touched.append(target)
                if rnd.random() < 0.5:
                    _gimp_mask(vp / "paths" / target, c)
                    counts["mask"] += 1
                else:
                    _vc3d_toggle_tag(vp / "paths" / target, "approved")
                    counts["tags"] += 1
                counts["retrace_triggers"] += 1
            touched.append(rnd.choice(pool))
            _gimp_mask(vp / "paths" / touched[-1], c)
            counts["mask"] += 1
            for tag in ("approved", "defective"):
                touched.append(rnd.choice(pool))
                _vc3d_toggle_tag(vp / "paths" / touched[-1], tag)
                counts["tags"] += 1
            _drained(d, q, touched)
            s = rss.sample()
            assert s is not None
            rss_daemon.append(s[0] / MIB)
            rss_total.append(s[1] / MIB)
            cycle_s.append(time.time() - tc)
            fds.append(rss.proc.num_fds())
            threads.append(rss.proc.num_threads())
    # every job final, the queue intact, links valid and symmetric
    states = dict(q.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    assert set(states) <= {"done", "failed"}, states
    failed = [q.get(j["id"]) for j in q.list(state="failed", limit=1000)]
    # only overlap jobs of patches deleted before their job ran may fail
    assert all(j["kind"] == "overlap" and not (vp / "paths" / j["params"]["segment"]).exists() for j in failed), \
        [(j["kind"], j["error"]) for j in failed]
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    _symmetric_valid_links(vp / "paths")
    linked = {json.loads(r[0])["segment"] for r in q.conn.execute(
        "SELECT params FROM jobs WHERE kind='overlap' AND state='done'")}
    for n in churn:  # every patch that appeared was linked (overlapping.json written, maybe empty)
        assert n in linked and (vp / "paths" / n / "overlapping.json").exists(), n
    assert sum(bool(read_overlaps(vp / "paths" / n)) for n in core + churn) >= 0.8 * len(core + churn)
    retraces = _count(q, "SELECT COUNT(*) FROM jobs WHERE kind='retrace' AND state='done'")
    assert retraces >= counts["retrace_triggers"] * 0.9, (retraces, counts)
    # flat memory
    w = max(1, cycles // 4)
    half = cycles // 2
    slope_total = slope_per_step(rss_total[half:])
    slope_daemon = slope_per_step(rss_daemon[half:])
    first_q, last_q = max(rss_total[:w]), max(rss_total[-w:])
    first_qd, last_qd = max(rss_daemon[:w]), max(rss_daemon[-w:])
    print(f"\nsoak: {cycles} cycles ({cycles / 4:.0f} simulated hours) in {sum(cycle_s):.0f} s "
          f"(median cycle {np.median(cycle_s):.1f} s); events {counts}; jobs {states}; {retraces} retraces; "
          f"RSS daemon {rss_daemon[0]:.0f} -> {rss_daemon[-1]:.0f} MiB (slope {slope_daemon:+.3f} MiB/cycle over the "
          f"2nd half, quarter peaks {first_qd:.0f} -> {last_qd:.0f}); daemon + workers {rss_total[0]:.0f} -> "
          f"{rss_total[-1]:.0f} MiB (slope {slope_total:+.3f} MiB/cycle, quarter peaks {first_q:.0f} -> {last_q:.0f}, "
          f"peak {rss.peak_total / MIB:.0f}); daemon fds {fds[0]} -> {fds[-1]}, threads {threads[0]} -> {threads[-1]}")
    assert slope_total < slope_mib and slope_daemon < slope_mib, (slope_total, slope_daemon)
    assert last_q <= (1 + growth) * first_q and last_qd <= (1 + growth) * first_qd, (first_q, last_q, first_qd, last_qd)
    # no descriptor or thread leak in the daemon either
    assert max(fds[-w:]) <= max(fds[:w]) + 8, fds
    assert max(threads[-w:]) <= max(threads[:w]) + 4, threads
    assert d.stop() == 0


def test_reads_and_our_own_writes_do_not_wake_the_watcher(daemon_factory):
    """Reading a surface (linking, tracing, VC3D browsing) or our own overlapping.json writes must
    not make the watcher re-read it; before the fix, every read re-triggered it forever."""
    import re
    import urllib.request
    d = daemon_factory()
    vp = d.volpkg
    t = load_truth(vp)
    rng = np.random.default_rng(1)
    d.start()
    names = [_patch(vp, t, rng, f"auto_grown_20250101000000{i:03d}").name for i in range(4)]
    q = d.queue()
    d.wait_for(lambda: _count(q, "SELECT COUNT(*) FROM jobs WHERE kind='overlap' AND state='done'") == 4, "linked")

    def events():
        text = urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=WAIT_CAP).read().decode()
        return float(re.search(r"^vcd_watcher_events_total (\S+)", text, re.M).group(1))

    def steady(seconds=1.0):
        """The events counter once it has not moved for ``seconds`` (late events of the writes above)."""
        last = [events(), time.monotonic()]

        def still():
            now = events()
            if now != last[0]:
                last[:] = [now, time.monotonic()]
            return time.monotonic() - last[1] >= seconds
        d.wait_for(still, "watcher events to settle")
        return last[0]
    before = steady()
    for _ in range(3):
        for n in names:
            read_surface(vp / "paths" / n)
            read_overlaps(vp / "paths" / n)
    link_new_patch(vp / "paths", names[0])  # rewrites overlapping.json files under their locks
    time.sleep(1.5)
    assert events() == before
    _vc3d_toggle_tag(vp / "paths" / names[1], "approved")  # a real edit still wakes it
    d.wait_for(lambda: q.fingerprint(names[1])["tags"] == ["approved"], "tag edit seen")
    assert events() > before
    assert d.stop() == 0


def test_preview_refreshes_are_coalesced_in_one_thread(scroll_copy):
    """A burst of traces (or retraces) asks for many preview refreshes: they run one at a time in a
    single thread and the burst collapses into at most one more refresh (a thread per trace used to
    pile up and grow the daemon's memory)."""
    import threading

    from vcd.daemon.logs import get_logger
    from vcd.daemon.watcher import PreviewRefresher
    r = PreviewRefresher(scroll_copy, get_logger())

    def settle():
        t0 = time.time()
        while not r.idle() and time.time() - t0 < WAIT_CAP:
            time.sleep(0.05)
    # one refresh first: thread pools the volume readers create lazily (once per process, so whether they
    # exist depended on which tests ran before in this process) are there before threads are counted
    r.request()
    settle()
    runs0 = r.runs
    before = threading.active_count()
    for _ in range(20):
        r.request()
    settle()
    assert 1 <= r.runs - runs0 <= 2, (runs0, r.runs)
    assert [t.name for t in threading.enumerate()].count("vcd-previews") == 1
    assert threading.active_count() <= before + 1
    assert (scroll_copy / ".vcd" / "previews" / "index.json").exists()
    r.stop()


def test_tracemalloc_diagnostics_are_logged(daemon_factory, monkeypatch):
    """VCD_TRACEMALLOC=<seconds> makes the daemon log its RSS, traced heap and top allocation growth."""
    monkeypatch.setenv("VCD_TRACEMALLOC", "0.5")
    d = daemon_factory()
    d.start()
    d.wait_for(lambda: len(d.events("memdiag")) >= 2, "memdiag lines")
    line = d.events("memdiag")[-1]
    assert line["rss_mib"] > 0 and line["traced_mib"] > 0 and isinstance(line["top_growth"], list)
    assert d.stop() == 0
