"""Chunk loading and trilinear sampling through zarr-python: local v2, local v3, remote (HTTP) v2
without and with the on-disk chunk cache.

    python bench/volume_read.py [--shape 192 256 256] [--points 20000] [--reps 5]

Prints ms per 64³ chunk read (all chunks in one call, best of --reps), the cold-cache sampling time
(a new ChunkCache: chunk loads + the kernel) and million samples/s (warm) for each store. The http
rows use ``python -m http.server`` on 127.0.0.1; "http v2 cached" reads a disk cache filled once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # not bench/: its queue.py shadows the stdlib

from vcd.formats.volume import ChunkCache, open_volume  # noqa: E402
from vcd.synth import make_scroll  # noqa: E402


@contextlib.contextmanager
def http_server(root: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # http.server as `python -m http.server` runs it, with a listen backlog of 128 instead of 5 (at 5,
    # zarr's 10 concurrent requests overflow it and the kernel's SYN retry adds 1 s: a test-server artefact)
    code = ("import functools, http.server as h, sys; h.ThreadingHTTPServer.request_queue_size = 128; "
            "h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), functools.partial("
            "h.SimpleHTTPRequestHandler, directory=sys.argv[2])).serve_forever()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _best(fn, reps: int) -> float:
    """Shortest of ``reps`` timed calls, s (the machine may be shared: the minimum is the cost)."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def measure(label: str, vol, pts: np.ndarray, reps: int = 5) -> None:
    level = vol.levels[0]
    caches = []

    def cold():
        caches.append(ChunkCache(level))
        caches[-1].sample(pts)

    t_cold = _best(cold, reps)
    c = caches[-1]
    n = int((c.slots >= 0).sum())
    warm = _best(lambda: c.sample(pts), reps)
    grid = list(np.ndindex(*level.chunk_grid))
    per_chunk = _best(lambda: level.read_chunks(grid), reps) / max(1, len(grid))
    print(f"{label:>15}: {per_chunk * 1e3:6.2f} ms/chunk read, cold sample {t_cold * 1e3:7.1f} ms "
          f"({n} chunks), warm {len(pts) / warm / 1e6:6.2f} M samples/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[192, 256, 256])
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import zarr
    with tempfile.TemporaryDirectory() as tmp:
        vp = make_scroll(Path(tmp) / "b.volpkg", shape=tuple(a.shape), preset="medium", seed=1, ct=False)
        v2 = open_volume(vp / "volumes" / "synth_pred.zarr")
        data = v2.levels[0].read_all()
        v3p = vp / "volumes" / "pred_v3.zarr"
        zarr.create_array(str(v3p / "0"), shape=data.shape, chunks=(64, 64, 64), dtype="uint8",
                          zarr_format=3)[...] = data
        (v3p / "meta.json").write_text((vp / "volumes" / "synth_pred.zarr" / "meta.json").read_text())
        pts = np.random.default_rng(0).random((a.points, 3)) * (np.asarray(data.shape[::-1]) - 1)
        measure("local v2", v2, pts, a.reps)
        measure("local v3", open_volume(v3p), pts, a.reps)
        with http_server(vp / "volumes") as base:
            os.environ["VCD_REMOTE_CACHE_BYTES"] = "0"      # no disk cache: every read goes to the server
            measure("http v2", open_volume(f"{base}/synth_pred.zarr"), pts, a.reps)
            del os.environ["VCD_REMOTE_CACHE_BYTES"]
            cached = open_volume(f"{base}/synth_pred.zarr", cache_root=Path(tmp) / "cache")
            cached.levels[0].read_all()                      # fill the disk cache once
            measure("http v2 cached", cached, pts, a.reps)


if __name__ == "__main__":
    main()
