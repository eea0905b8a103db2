"""Fault injection against the real daemon and real files (issue 8)."""

import json
import math
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

from vcd.daemon.queue import JobQueue
from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_surface, set_tag, write_mask, write_surface
from vcd.formats.volpkg import list_patches
from vcd.synth import load_truth

from ..daemon.conftest import QUIET, WAIT_CAP, Daemon
from ..daemon.test_daemon import put_patch
from .events import watcher_saw
from .rss import MIB, RssSampler


def _good_grid(vp, th=3.0):
    t = load_truth(vp)
    return t.sample_grid(t.theta0 + th, t.theta0 + th + 1.0, 20, 60, 4)


def _malformed_cases(vp):
    """name -> function that creates a malformed surface directory in paths/."""
    g = _good_grid(vp)
    P = vp / "paths"

    def base(name):
        return write_surface(P / name, g, {"scale": [0.25, 0.25], "source": "vcd_grow"})

    def meta_edit(name, text):
        d = base(name)
        (d / "meta.json").write_text(text)

    cases = {
        "truncated_meta": lambda n: meta_edit(n, '{"format": "tifxyz", "scale": [0.25'),
        "empty_meta": lambda n: meta_edit(n, ""),
        "garbage_meta": lambda n: meta_edit(n, "\x00\x01garbage"),
        "meta_without_format": lambda n: meta_edit(n, json.dumps({"scale": [0.25, 0.25], "bbox": [[0, 0, 0], [1, 1, 1]],
                                                                   "source": "vcd_grow", "type": "seg"})),
        "tifs_differ_in_shape": lambda n: tifffile.imwrite(base(n) / "y.tif", np.zeros((3, 3), np.float32)),
        "non_float_tifs": lambda n: tifffile.imwrite(base(n) / "z.tif", np.zeros(g.shape[:2], np.int16)),
        "all_invalid": lambda n: write_surface(P / n, np.full_like(g, -1), {"scale": [0.25, 0.25], "source": "vcd_grow"}),
        "nans": lambda n: tifffile.imwrite(base(n) / "x.tif", np.full(g.shape[:2], np.nan, np.float32)),
        "mask_wrong_aspect": lambda n: tifffile.imwrite(base(n) / "mask.tif", np.full((5, 50), 255, np.uint8)),
        "mask_16bit": lambda n: tifffile.imwrite(base(n) / "mask.tif", np.full(g.shape[:2], 255, np.uint16)),
        "truncated_tif": lambda n: (lambda d: (d / "x.tif").write_bytes((d / "x.tif").read_bytes()[:50]))(base(n)),
        "missing_z_tif": lambda n: (base(n) / "z.tif").unlink(),
        "dangling_overlaps_symlink": lambda n: (lambda d: ((d / "overlaps").mkdir(),
                                                           os.symlink("../../nowhere", d / "overlaps" / "nowhere")))(base(n)),
        "looping_overlaps_symlink": lambda n: (lambda d: ((d / "overlaps").mkdir(),
                                                          os.symlink("loop", d / "overlaps" / "loop")))(base(n)),
        "overlapping_json_names_missing": lambda n: (base(n) / "overlapping.json").write_text(
            json.dumps({"overlapping": ["auto_grown_does_not_exist"]})),
        "overlapping_json_garbage": lambda n: (base(n) / "overlapping.json").write_text("[1, 2"),
        "non_utf8_name": None,
        "very_long_name": None,
        "stray_file_in_paths": lambda n: (P / n).write_text("not a directory"),
        "no_meta_at_all": lambda n: (lambda d: (d / "meta.json").unlink())(base(n)),
        "meta_is_a_list": lambda n: meta_edit(n, "[1, 2, 3]"),
    }
    return cases


def test_twenty_malformed_inputs_leave_the_daemon_running(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg
    d.start()
    cases = _malformed_cases(vp)
    names = {}
    for i, (case, make) in enumerate(cases.items()):
        name = f"auto_grown_2025010100000{i:04d}"
        if case == "non_utf8_name":
            tmp_name = write_surface(vp / "paths" / "auto_grown_tmp_nonutf8", _good_grid(vp),
                                     {"scale": [0.25, 0.25], "source": "vcd_grow"})
            os.rename(bytes(tmp_name), bytes(vp / "paths") + b"/auto_grown_\xff\xfe_bad")
            name = "non-utf8"
        elif case == "very_long_name":
            name = "auto_grown_" + "x" * 240
            write_surface(vp / "paths" / name, _good_grid(vp, 5.0), {"scale": [0.25, 0.25], "source": "vcd_grow"})
        else:
            make(name)
        names[case] = name
    assert len(cases) >= 20
    # a patch copied in slowly, file by file
    slow = vp / "paths" / "auto_grown_20250101000099999"
    tmpd = vp / "slowsrc"
    write_surface(tmpd, _good_grid(vp, 3.3), {"scale": [0.25, 0.25], "source": "vcd_grow"})
    slow.mkdir()
    for f in ("x.tif", "y.tif", "z.tif", "meta.json"):
        (slow / f).write_bytes((tmpd / f).read_bytes())
        time.sleep(0.4)
    q = d.queue()
    d.wait_for(lambda: not q.list(state="queued") and not q.list(state="running") and
               any(j for j in q.list(kind="overlap") if "99999" in json.dumps(q.get(j["id"])["params"])),
               "queue drained")
    assert d.proc.poll() is None  # still running
    # every failure names its file and a fix
    for j in q.list(state="failed", limit=1000):
        err = q.get(j["id"])["error"]
        assert "Fix:" in err and "/paths/" in err, err
    # the daemon still works: a good patch overlapping the slow one gets linked
    put_patch(vp, "auto_grown_20250101000088888", 3.1, 4.1, 30, 70)
    d.wait_for(lambda: "auto_grown_20250101000088888" in read_overlaps(slow), "link after malformed storm")
    assert d.stop() == 0


def _symmetric_valid_links(paths):
    for p in paths.iterdir():
        if not p.is_dir() or p.name.startswith("."):
            continue
        j = p / "overlapping.json"
        if j.exists():
            data = json.loads(j.read_text())  # valid JSON, always
            for other in data["overlapping"]:
                if (paths / other / "meta.json").exists():
                    assert p.name in read_overlaps(paths / other), (p.name, other)


@pytest.mark.parametrize("iterations", [3, pytest.param(30, marks=pytest.mark.heavy)])
def test_kill9_at_random_points_leaves_nothing_partial(daemon_factory, iterations):
    d = daemon_factory("""
[schedule]
seed_count = 2
expand_queue = 2
interval_seconds = 0.5
max_patches = 30
[daemon]
lease_seconds = 2
debounce_seconds = 0.2
""")
    vp = d.volpkg
    grow = {"generations": 10, "step_size": 5, "min_area_cm": 0.0001, "tgt_overlap_count": 20}
    (vp / "seed.json").write_text(json.dumps(grow))
    (vp / "expand.json").write_text(json.dumps(grow))
    rng = random.Random(1234)
    for it in range(iterations):
        d.start()
        time.sleep(rng.uniform(1.0, 4.0))
        os.killpg(d.proc.pid, signal.SIGKILL)  # daemon and all its workers, mid-job
        d.proc.wait()
        time.sleep(0.2)
    d.start()
    q = d.queue()
    q.set_kv("paused", True)
    d.wait_for(lambda: not q.list(state="queued") and not q.list(state="running"), "drain after crashes")
    assert all(j["state"] in ("done", "failed", "cancelled") for j in q.list(limit=10000))
    paths = vp / "paths"
    for p in paths.iterdir():  # nothing partial visible as a patch
        if p.is_dir():
            assert not p.name.startswith("."), p
            assert (p / "meta.json").exists() and all((p / f"{c}.tif").exists() for c in "xyz"), p
            read_surface(p)
    _symmetric_valid_links(paths)
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    d.stop()


def test_concurrent_vc3d_and_gimp_edits_lose_nothing(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg
    names = [put_patch(vp, f"auto_grown_2025010100000000{i}", 2.0 + 0.3 * i, 3.0 + 0.3 * i, 20, 60).name
             for i in range(4)]
    d.start()
    stop = threading.Event()
    final = {}

    def annotator():
        rnd = random.Random(7)
        k = 0
        while not stop.is_set():
            n = rnd.choice(names)
            pd = vp / "paths" / n
            meta = json.loads((pd / "meta.json").read_text())  # VC3D: stale copy, tmp + rename, no lock
            tags = meta.setdefault("tags", {})
            if "reviewed" in tags:
                del tags["reviewed"]
            else:
                tags["reviewed"] = {"user": "alice"}
            (pd / "meta.json.tmp").write_text(json.dumps(meta, indent=4))
            os.replace(pd / "meta.json.tmp", pd / "meta.json")
            shape = read_surface(pd, apply_mask=False).shape
            keep = np.full(shape, 255, np.uint8)
            keep[: (k % 3) + 1, :2] = 0
            write_mask(pd, keep)  # GIMP-style replace
            final[n] = ("reviewed" in tags, (k % 3) + 1)
            k += 1
            time.sleep(0.02)
    th = threading.Thread(target=annotator)
    th.start()
    more = [put_patch(vp, f"auto_grown_2025010100000001{i}", 2.1 + 0.3 * i, 3.1 + 0.3 * i, 25, 65).name
            for i in range(4)]
    time.sleep(2.0)
    stop.set()
    th.join()
    q = d.queue()
    # the events: the watcher has recorded every patch's final state (so it queued their overlap jobs), then all ran
    d.wait_for(lambda: watcher_saw(q, vp, names + more) and not q.list(state="queued")
               and not q.list(state="running"), "drain")
    for n, (reviewed, rows_masked) in final.items():
        meta = json.loads((vp / "paths" / n / "meta.json").read_text())
        assert ("reviewed" in meta.get("tags", {})) == reviewed
        s = read_surface(vp / "paths" / n)
        assert not s.valid[:rows_masked, :2].any()
    for n in more:  # every link made, symmetric
        assert read_overlaps(vp / "paths" / n)
    _symmetric_valid_links(vp / "paths")
    d.stop()


def test_disk_full_while_writing_fails_cleanly(scroll_copy, tmp_path):
    """RLIMIT_FSIZE makes the first large write fail (EFBIG), as a full disk would."""
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"generations": 20, "step_size": 5, "min_area_cm": 0.0001, "seed": 1}))
    t = load_truth(scroll_copy)
    seed = t.point(t.theta0 + 8, 48)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
    r = subprocess.run([sys.executable, "-m", "vcd", "grow", str(scroll_copy / "volumes" / "synth_pred.zarr"),
                        str(scroll_copy / "paths"), str(params), *map(str, seed)], capture_output=True, text=True,
                       preexec_fn=limit)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in r.stderr, r.stderr
    assert not [p for p in (scroll_copy / "paths").iterdir() if p.is_dir()]
    staging = scroll_copy / ".vcd" / "tmp"
    assert not staging.exists() or not any(staging.iterdir())


def test_sqlite_busy_is_retried_not_crashed(scroll_copy):
    q = JobQueue.for_volpkg(scroll_copy)
    other = sqlite3.connect(str(q.path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    done = {}

    def submit():
        done["id"] = subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(scroll_copy), "submit",
                                     "sleep", "--param", "seconds=0.1"], capture_output=True, text=True)
    th = threading.Thread(target=submit)
    th.start()
    time.sleep(2.0)
    other.execute("COMMIT")
    th.join(WAIT_CAP)
    assert done["id"].returncode == 0, done["id"].stderr
    assert q.get(int(done["id"].stdout.strip()))["state"] == "queued"


def _count(q, sql, *args):
    return q.conn.execute(sql, args).fetchone()[0]


STORM_PATCH_VX = 20  # a storm patch: 20 x 20 voxels of sheet (a 6 x 6 grid, 4 voxels apart)


def storm_side(n: int) -> int:
    """Side (x = y, z = side / 2) of a synthetic scroll whose sheet holds ``n`` storm patches at a
    realistic density: 20-30 links per patch (the sheet area grows as side^3; 320 for 10,000)."""
    return max(96, 16 * round(20 * (n / 10000) ** (1 / 3)))


def storm_patch_boxes(t, n: int, rng, size: float = STORM_PATCH_VX):
    """``n`` (theta0, theta1, z0, z1) boxes spread uniformly per unit of sheet area (the radius grows
    linearly with theta, so area up to radius r grows as r^2), each ``size`` voxels of arc by ``size`` in z."""
    a = t.pitch / (2 * math.pi)
    r1 = t.r0 + a * (t.theta1 - t.theta0)
    r = np.sqrt(t.r0 ** 2 + rng.random(n) * (r1 ** 2 - t.r0 ** 2))
    dth = size / r
    th = np.minimum(t.theta0 + (r - t.r0) / a, t.theta1 - dth)
    z0 = rng.uniform(2, t.shape[0] - 3 - size, n)
    return [(float(a_), float(a_ + d_), float(z_), float(z_ + size)) for a_, d_, z_ in zip(th, dth, z0)]


@pytest.mark.heavy
@pytest.mark.parametrize("n", [int(os.environ.get("VCD_STORM_PATCHES", "10000"))])
def test_event_storm_bounded_memory_all_linked(tmp_path, n):
    """n patch dirs appear within a minute: memory stays bounded (peak RSS reported) and all are linked.

    The collection is realistic: the patches (20 x 20 voxel grids sampled from the true sheet) are
    spread over a scroll big enough that each overlaps ~20-30 others (VC3D's expansion aims at
    ``tgt_overlap_count`` links; real collections have tens per patch), not hundreds. They are written
    beforehand outside paths/ and renamed in as fast as possible, as a big copy or many growers
    finishing at once would."""
    from vcd.synth import make_scroll
    side = storm_side(n)
    t_gen = time.time()
    vp = make_scroll(tmp_path / "storm.volpkg", shape=(side // 2, side, side), preset="medium", seed=3, ct=False)
    t = load_truth(vp)
    d = Daemon(vp, QUIET)
    rng = np.random.default_rng(0)
    src = vp / "storm_src"
    src.mkdir()
    names = [f"auto_grown_{i:017d}" for i in range(n)]
    for name, (th0, th1, z0, z1) in zip(names, storm_patch_boxes(t, n, rng)):
        write_surface(src / name, t.sample_grid(th0, th1, z0, z1, 4), {"scale": [0.25, 0.25], "source": "vcd_grow"})
    t_gen = time.time() - t_gen
    try:
        _storm(d, vp, src, names, n, t_gen)
    finally:
        if d.proc and d.proc.poll() is None:
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait()


def _storm(d, vp, src, names, n, t_gen):
    d.start()
    q = d.queue()
    with RssSampler(d.proc.pid) as rss:
        t0 = time.time()
        for name in names:
            os.rename(src / name, vp / "paths" / name)
        t_appear = time.time() - t0
        last, t_last = -1, time.time()
        while True:
            done = _count(q, "SELECT COUNT(*) FROM jobs WHERE kind='overlap' AND state IN ('done','failed')")
            if done >= n and not _count(q, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued','running')"):
                break
            if done != last:
                last, t_last = done, time.time()
            assert time.time() - t_last < 600, f"no progress for 10 min at {done}/{n}"
            assert d.proc.poll() is None, d.log.read_text()[-3000:]
            time.sleep(1.0)
        t_all = time.time() - t0
    failed = q.list(state="failed", limit=20)
    assert not failed, [q.get(j["id"])["error"] for j in failed]
    jobs = {json.loads(r[0])["segment"] for r in q.conn.execute(
        "SELECT params FROM jobs WHERE kind='overlap' AND state='done'")}
    assert jobs == set(names)  # one overlap job per patch, each done
    durs = [r[0] for r in q.conn.execute("SELECT finished - started FROM jobs WHERE kind='overlap' AND state='done'")]
    links = [len(read_overlaps(vp / "paths" / name)) for name in names]
    _symmetric_valid_links(vp / "paths")
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    mib = MIB
    side = storm_side(n)
    print(f"\nstorm: {n} patches on a {side // 2}x{side}x{side} scroll, generated in {t_gen:.0f} s, renamed into "
          f"paths/ in {t_appear:.1f} s; all linked "
          f"{t_all:.0f} s after the first appeared ({n / t_all:.1f} patches/s); links per patch: mean "
          f"{np.mean(links):.1f}, min {min(links)}, max {max(links)}; overlap job run time median "
          f"{np.median(durs) * 1000:.0f} ms, p95 {np.percentile(durs, 95) * 1000:.0f} ms; peak RSS: daemon "
          f"{rss.peak_daemon / mib:.0f} MiB, "
          f"largest worker {rss.peak_worker / mib:.0f} MiB, daemon + workers {rss.peak_total / mib:.0f} MiB")
    assert min(links) >= 1  # every patch lies on the sheet next to others: each has links
    assert 10 <= np.mean(links) <= 40, np.mean(links)  # a realistic collection, not a pile-up
    assert rss.peak_daemon < 512 * mib, rss.peak_daemon / mib
    assert rss.peak_worker < 1024 * mib, rss.peak_worker / mib
    assert d.stop() == 0


def test_kill9_during_trace_winding_render_jobs(daemon_factory):
    """kill -9 of the daemon and its workers while trace, winding and render jobs run."""
    from vcd.grow.linking import link_new_patch
    d = daemon_factory("""
[schedule]
expansion = false
[daemon]
lease_seconds = 2
[pipeline]
after_trace = ["winding", "render"]
""")
    vp = d.volpkg
    t = load_truth(vp)
    rng = np.random.default_rng(3)
    names = []
    for i in range(60):
        th = rng.uniform(t.theta0 + 3, t.theta0 + 9)
        z0 = rng.uniform(5, 50)
        names.append(put_patch(vp, f"auto_grown_2025010100{i:07d}", th - t.theta0, th - t.theta0 + 0.9, z0, z0 + 40).name)
    for n in names:
        link_new_patch(vp / "paths", n)
    d.start()
    q = d.queue()
    params = {"step": 2, "src_step": 4, "consensus_default_th": 4, "inlier_base_threshold": 8, "snapshot_every": 5,
              "volume": str(vp / "volumes" / "synth_pred.zarr"), "src_dir": str(vp / "paths"),
              "tgt_dir": str(vp / "traces"), "seed": str(vp / "paths" / names[0])}
    ids = [q.submit("trace", params) for _ in range(2)]
    rnd = random.Random(99)
    for _ in range(2):
        time.sleep(rnd.uniform(0.5, 2.5))
        os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
        d.start()
    d.wait_for(lambda: all(q.get(i)["state"] in ("done", "failed") for i in ids) and
               len(q.list(kind="render", state="done")) >= 2 and
               not q.list(state="queued") and not q.list(state="running"), "all jobs final")
    assert all(j["state"] in ("done", "failed", "cancelled") for j in q.list(limit=1000))
    assert q.list(kind="winding", state="done") and q.list(kind="render", state="done"), (
        [(j["kind"], j["state"], j["error"]) for j in q.list(limit=500) if j["kind"] != "overlap"],
        d.log.read_text()[-3000:])
    for p in (vp / "traces").iterdir():  # every visible trace or snapshot is complete
        if p.is_dir():
            assert not p.name.startswith("."), p
            read_surface(p)
            assert (p / "vcd_provenance.json").exists()
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    d.stop()
