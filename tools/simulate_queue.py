#!/usr/bin/env python
"""Replay a synthetic job stream against the real SQLite queue to measure the daemon's own overhead.

Usage: ``python tools/simulate_queue.py --patches 10000 100000``

For N patches the stream is what expansion produces: one ``expand`` job per patch, then one
``overlap`` job per patch (deduplicated), a ``retrace`` per 1000 patches; W simulated workers
claim, heartbeat once and complete each job (no real work). Prints jobs/s, per-job overhead and
the database size — the part of a whole-scroll run the daemon itself costs.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from vcd.daemon.queue import JobQueue


def simulate(n: int, workers: int = 8) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        q = JobQueue(Path(tmp) / "q.sqlite")
        t0 = time.perf_counter()
        for i in range(n):
            q.submit("expand", {"volume": "/v", "paths": "/p"})
        for i in range(n):
            q.submit("overlap", {"paths": "/p", "segment": f"auto_grown_{i:017d}"}, dedup_key=f"overlap:{i}")
        for i in range(n // 1000):
            q.submit("retrace", {"trace": f"/t/{i}"}, dedup_key=f"retrace:{i}")
        t1 = time.perf_counter()
        done = 0
        names = [f"w{k}" for k in range(workers)]
        while True:
            progressed = False
            for w in names:
                j = q.claim(w)
                if j is None:
                    continue
                q.heartbeat(j["id"], 60, 0.5, "working")
                q.complete(j["id"], {"ok": True})
                done += 1
                progressed = True
            if not progressed:
                break
        t2 = time.perf_counter()
        size = os.path.getsize(Path(tmp) / "q.sqlite") + sum(
            os.path.getsize(p) for p in Path(tmp).glob("q.sqlite-*"))
        print(f"{n:>7,} patches: {done:,} jobs; enqueue {(2 * n) / (t1 - t0):,.0f}/s; claim+heartbeat+complete "
              f"{done / (t2 - t1):,.0f} jobs/s = {(t2 - t1) / done * 1e3:.3f} ms/job daemon overhead; "
              f"db {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args()
    for n in a.patches:
        simulate(n, a.workers)
