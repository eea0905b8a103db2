"""Chunk loading and trilinear sampling through zarr-python: local v2, local v3, remote (HTTP) v2.

    python bench/volume_read.py [--shape 192 256 256] [--points 20000]

Prints ms per 64³ chunk loaded (cold cache) and million samples/s (warm) for each store.
"""

from __future__ import annotations

import argparse
import contextlib
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
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def measure(label: str, vol, pts: np.ndarray, reps: int = 3) -> None:
    level = vol.levels[0]
    cold = []
    for _ in range(reps):
        c = ChunkCache(level)
        t = time.perf_counter()
        c.sample(pts)
        cold.append(time.perf_counter() - t)
    n = int((c.slots >= 0).sum())
    t = time.perf_counter()
    for _ in range(reps):
        c.sample(pts)
    warm = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    level.read_chunks(list(np.ndindex(*level.chunk_grid)))
    per_chunk = (time.perf_counter() - t) / max(1, int(np.prod(level.chunk_grid)))
    print(f"{label:>10}: {per_chunk * 1e3:6.2f} ms/chunk read, cold sample {min(cold) * 1e3:7.1f} ms "
          f"({n} chunks), warm {len(pts) / warm / 1e6:6.2f} M samples/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[192, 256, 256])
    ap.add_argument("--points", type=int, default=20000)
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
        measure("local v2", v2, pts)
        measure("local v3", open_volume(v3p), pts)
        with http_server(vp / "volumes") as base:
            measure("http v2", open_volume(f"{base}/synth_pred.zarr"), pts)


if __name__ == "__main__":
    main()
