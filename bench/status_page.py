"""Benchmark the daemon's status page (:mod:`vcd.daemon.status_page`) at 10,000 patches.

Run: ``python bench/status_page.py [--patches 10000] [--jobs 30000] [--renders 50]``

Builds a synthetic volpkg with ``--patches`` tiny patch directories (``meta.json`` with a bbox and an
area, a 2×2 tifxyz, ``overlapping.json``), a few traces with QA maps and provenance, and a queue with
``--jobs`` finished/failed jobs; then serves the page from a real :class:`~vcd.daemon.status_page.StatusServer`
and times GET ``/`` over HTTP. Prints the first render (which computes the collection's numbers once),
the time of that computation (done in the background afterwards, never in a request), and the median
and p95 of the steady-state renders (target < 200 ms at 10,000 patches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from vcd.daemon.queue import JobQueue, queue_path
from vcd.daemon.status_page import Refreshing, StatusPage, StatusServer
from vcd.formats.tifxyz import write_surface
from vcd.post.coverage import collection_stats
from vcd.trace import qa


def build(vp: Path, n_patches: int, n_jobs: int) -> None:
    (vp / "paths").mkdir(parents=True)
    (vp / "traces").mkdir()
    (vp / "config.json").write_text(json.dumps({"name": "bench", "version": 6}))
    tiny = np.array([[[0, 0, 1], [1, 0, 1]], [[0, 1, 1], [1, 1, 1]]], np.float32)
    template = write_surface(vp / "template", tiny, {"scale": [1.0, 1.0], "source": "vcd_grow", "area_cm2": 0.001})
    files = {f.name: f.read_bytes() for f in template.iterdir() if f.name != "meta.json"}
    meta = json.loads((template / "meta.json").read_text())
    for i in range(n_patches):
        d = vp / "paths" / f"auto_grown_{20250101000000000 + i}"
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(data)
        (d / "meta.json").write_text(json.dumps({**meta, "uuid": d.name}))
        links = [f"auto_grown_{20250101000000000 + (i + k) % n_patches}" for k in (1, 2, 3)]
        (d / "overlapping.json").write_text(json.dumps({"overlapping": links}))
    qmap = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    for t in range(8):
        name = f"auto_trace_{20250102000000000 + t}"
        used = {f"auto_grown_{20250101000000000 + (t * 300 + k) % n_patches}": {"corners": 3} for k in range(300)}
        write_surface(vp / "traces" / name, tiny, {"scale": [1.0, 1.0], "source": "vcd_trace", "area_cm2": 1.5,
                                                   "qa": qa.summary(qmap)},
                      extra_files={"vcd_provenance.json": json.dumps({"version": 1, "patches": used}).encode(),
                                   "qa.png": qa.png(qmap, name)})
    q = JobQueue(queue_path(vp))
    for i in range(n_jobs):
        q.submit("overlap", {"paths": str(vp / "paths"), "segment": f"p{i}"})
    while (job := q.claim("bench")) is not None:
        if job["id"] % 50 == 0:
            q.fail(job["id"], f"/x/p{job['id']}: bad patch. Fix: mask it", retry=False)
        else:
            q.complete(job["id"], {"linked": 3})
    q.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=30000)
    ap.add_argument("--renders", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vp = Path(tmp) / "bench.volpkg"
        t0 = time.perf_counter()
        build(vp, a.patches, a.jobs)
        print(f"built {a.patches} patches, 8 traces, {a.jobs} jobs in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        st = collection_stats(vp, 20)
        stats_s = time.perf_counter() - t0
        assert st["patches"] == a.patches, st
        page = StatusPage(vp, queue_path(vp), {"started": time.time(), "pid": 0, "version": "bench"},
                          Refreshing(lambda: collection_stats(vp, 20), 2.0).get, workers=2)
        server = StatusServer(("127.0.0.1", 0), CollectorRegistry(), page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"

        def get() -> float:
            t = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=600).read()
            assert b'<tr class="trace">' in body
            return time.perf_counter() - t
        first = get()
        times = [get() for _ in range(a.renders)]
        time.sleep(2.5)  # the collection's numbers are now stale: requests keep rendering while they refresh
        during = [get() for _ in range(10)]
        server.shutdown()
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        print(f"collection_stats at {a.patches} patches: {stats_s * 1000:.0f} ms (background refresh, every >= 2 s)")
        print(f"first render (computes it once): {first * 1000:.0f} ms")
        print(f"render over HTTP: median {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
              f"({a.renders} renders, {1 / statistics.median(times):.0f} pages/s); while refreshing: "
              f"max {max(during) * 1000:.1f} ms — target < 200 ms")


if __name__ == "__main__":
    main()
