"""Volumes through zarr-python: v3 (default codecs, OME-Zarr 0.5), remote over HTTP (issue 15 item 3)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from vcd.formats.convert import convert_volume
from vcd.formats.tifxyz import read_surface
from vcd.formats.volume import open_volume
from vcd.synth import load_truth
from vcd.synth.score import score_surface

SMALL = dict(generations=25, step_size=5, min_area_cm=0.0001, seed=1)


def _vcd(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def write_v3_volume(src: Path, dst: Path, chunks=(32, 32, 32)) -> list[np.ndarray]:
    """Rewrite the OME-Zarr v2 volume ``src`` as zarr v3 / OME-Zarr 0.5 with zarr-python's default
    codecs (zstd, which VC3D cannot read); returns the level arrays ``[z, y, x]``."""
    vol = open_volume(src)
    datas = [lvl.read_all() for lvl in vol.levels]
    datasets = [{"path": str(n), "coordinateTransformations": [{"type": "scale", "scale": [2.0 ** n] * 3}]}
                for n in range(len(datas))]
    zarr.open_group(str(dst), mode="w", zarr_format=3, attributes={"ome": {"version": "0.5", "multiscales": [
        {"datasets": datasets, "axes": [{"name": a, "type": "space"} for a in "zyx"]}]}})
    for n, d in enumerate(datas):
        a = zarr.create_array(str(dst / str(n)), shape=d.shape, chunks=chunks, dtype=d.dtype, zarr_format=3)
        a[...] = d
    (dst / "meta.json").write_text((src / "meta.json").read_text())
    assert (dst / "0" / "zarr.json").exists() and not (dst / "0" / ".zarray").exists()
    return datas


@pytest.fixture
def v3_scroll(scroll_copy):
    """The medium scroll with its prediction volume replaced by a zarr v3 copy."""
    src = scroll_copy / "volumes" / "synth_pred.zarr"
    dst = scroll_copy / "volumes" / "synth_pred_v3.zarr"
    datas = write_v3_volume(src, dst)
    return scroll_copy, dst, datas


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(root: Path, drop_first: bool = False):
    """``python -m http.server`` on 127.0.0.1 serving ``root``; stopped on exit, also on failure.
    ``drop_first``: the first request of every chunk is cut off half-way (``flaky_http.py``)."""
    port = _free_port()
    cmd = ([sys.executable, str(Path(__file__).with_name("flaky_http.py")), str(port), str(root)] if drop_first
           else [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # wait until it accepts connections (bounded by attempts, not a clock)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sample_points(shape, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) * (np.asarray(shape[::-1]) - 1)


def test_v3_volume_opens_samples_and_info(v3_scroll):
    vp, v3, datas = v3_scroll
    vol = open_volume(v3)
    assert vol.levels[0].zarr_format == 3 and [l.shape for l in vol.levels] == [d.shape for d in datas]
    np.testing.assert_array_equal(vol.levels[0].read_all(), datas[0])
    v2 = open_volume(vp / "volumes" / "synth_pred.zarr")
    pts = _sample_points(datas[0].shape)
    np.testing.assert_array_equal(vol.sampler().sample(pts), v2.sampler().sample(pts))
    r = _vcd("info", v3, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["zarr_format"] == 3


def test_v3_volume_grows_a_patch(v3_scroll, tmp_path):
    vp, v3, _ = v3_scroll
    t = load_truth(vp)
    seed = t.point(t.theta0 + 0.55 * (t.theta1 - t.theta0), 48)
    params = tmp_path / "p.json"
    params.write_text(json.dumps(SMALL))
    r = _vcd("grow", v3, vp / "paths", params, *seed.tolist())
    assert r.returncode == 0, r.stderr
    name = r.stdout.split("wrote ")[1].split()[0]
    sc = score_surface(read_surface(name).points, t)
    assert sc["n_valid"] > 300 and sc["mean_dist"] <= 1.0 and sc["jumps"] == 0, sc


def test_v3_volume_converts_to_vc3d_v2(v3_scroll, tmp_path):
    vp, v3, datas = v3_scroll
    r = _vcd("convert", v3, tmp_path / "out.zarr", "--algorithm", "max")
    assert r.returncode == 0, r.stderr
    za = json.loads((tmp_path / "out.zarr" / "0" / ".zarray").read_text())
    assert za["zarr_format"] == 2 and za["dtype"] == "|u1" and za["compressor"]["id"] == "blosc"
    assert za["fill_value"] == 0 and za["dimension_separator"] == "/" and not za["filters"]
    out = open_volume(tmp_path / "out.zarr")
    np.testing.assert_array_equal(out.levels[0].read_all(), datas[0])


def test_uint16_v3_converts_with_warning(tmp_path):
    d16 = (np.random.default_rng(4).random((20, 24, 28)) * 65535).astype(np.uint16)
    src = tmp_path / "u16.zarr"
    zarr.create_array(str(src / "0"), shape=d16.shape, chunks=(16, 16, 16), dtype="uint16", zarr_format=3)[...] = d16
    (src / "meta.json").write_text(json.dumps({"format": "zarr", "voxelsize": 7.91}))
    r = _vcd("convert", src, tmp_path / "u8.zarr")
    assert r.returncode == 0, r.stderr
    assert "uint16" in r.stderr and "vcd convert" in r.stderr
    np.testing.assert_array_equal(open_volume(tmp_path / "u8.zarr").levels[0].read_all(), d16 // 257)


@pytest.mark.parametrize("which", ["synth_pred.zarr", "synth_pred_v3.zarr"])
def test_remote_volume_over_http_samples_the_same(v3_scroll, which):
    pytest.importorskip("aiohttp")
    vp, _, datas = v3_scroll
    local = open_volume(vp / "volumes" / which)
    pts = _sample_points(datas[0].shape, seed=1)
    with http_server(vp / "volumes") as base:
        url = f"{base}/{which}"
        remote = open_volume(url)
        assert remote.url == url and [l.shape for l in remote.levels] == [l.shape for l in local.levels]
        np.testing.assert_array_equal(remote.sampler().sample(pts), local.sampler().sample(pts))
        np.testing.assert_array_equal(remote.levels[1].read_all(), local.levels[1].read_all())
        r = _vcd("info", url)
        assert r.returncode == 0 and "zarr_format" in r.stdout, r.stderr


def test_remote_dropped_connection_is_one_line_not_zeros(v3_scroll):
    pytest.importorskip("aiohttp")
    vp, _, _ = v3_scroll
    from vcd.errors import FormatError
    from vcd.formats import zarrio
    with http_server(vp / "volumes") as base:
        remote = open_volume(f"{base}/synth_pred_v3.zarr")
    old = zarrio.RETRY_WAIT_S
    zarrio.RETRY_WAIT_S = 0.01
    try:
        with pytest.raises(FormatError, match="cannot be read after") as ei:
            remote.levels[0].read_chunk(1, 1, 1)   # the server is gone
    finally:
        zarrio.RETRY_WAIT_S = old
    assert "zeros" in str(ei.value) and "\n" not in str(ei.value)


def test_remote_v3_volume_grows_a_patch(v3_scroll, tmp_path):
    pytest.importorskip("aiohttp")
    vp, _, _ = v3_scroll
    t = load_truth(vp)
    seed = t.point(t.theta0 + 0.55 * (t.theta1 - t.theta0), 48)
    params = tmp_path / "p.json"
    params.write_text(json.dumps(dict(SMALL, cache_root=str(tmp_path / "cache"))))
    with http_server(vp / "volumes") as base:
        r = _vcd("grow", "-v", f"{base}/synth_pred_v3.zarr", "-t", vp / "paths", "-p", params, "-s", *seed.tolist())
    assert r.returncode == 0, r.stderr
    sc = score_surface(read_surface(r.stdout.split("wrote ")[1].split()[0]).points, t)
    assert sc["n_valid"] > 300 and sc["mean_dist"] <= 1.0 and sc["jumps"] == 0, sc
    assert any((tmp_path / "cache" / "remote-chunks").iterdir())   # the chunks were kept under cache_root


# ---------------------------------------------------------------------- the disk cache of remote volumes
def _read_levels(vol) -> list[np.ndarray]:
    return [lvl.read_all() for lvl in vol.levels]


@pytest.mark.parametrize("which", ["synth_pred.zarr", "synth_pred_v3.zarr"])
def test_remote_volume_is_read_from_the_disk_cache_once_served(v3_scroll, tmp_path, which):
    """Served once: a second open (a new process's view: a new Volume, a new cache object) needs no server."""
    pytest.importorskip("aiohttp")
    vp, _, _ = v3_scroll
    local = open_volume(vp / "volumes" / which)
    pts = _sample_points(local.shape, seed=2)
    with http_server(vp / "volumes") as base:
        url = f"{base}/{which}"
        first = open_volume(url, cache_root=tmp_path / "cache")
        served = _read_levels(first)
        assert first.levels[0].array.store_path.store.cache.misses > 0
    for a, b in zip(served, _read_levels(local)):
        np.testing.assert_array_equal(a, b)
    again = open_volume(url, cache_root=tmp_path / "cache")        # the server is gone
    for a, b in zip(_read_levels(again), served):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.sampler().sample(pts), local.sampler().sample(pts))
    assert again.levels[0].array.store_path.store.cache.misses == 0
    assert (tmp_path / "cache" / "remote-chunks").is_dir()
    r = _vcd("info", url, "--json")   # the CLI's default cache ($VCD_CACHE_DIR) was not filled: one line
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_reads_a_remote_volume_offline_after_a_restart(v3_scroll, monkeypatch):
    """`vcd info URL` while served fills the default disk cache; a new process reads it offline."""
    pytest.importorskip("aiohttp")
    vp, _, _ = v3_scroll
    with http_server(vp / "volumes") as base:
        url = f"{base}/synth_pred_v3.zarr"
        served = _vcd("info", url, "--json")
    assert served.returncode == 0, served.stderr
    offline = _vcd("info", url, "--json")
    assert offline.returncode == 0 and json.loads(offline.stdout) == json.loads(served.stdout), offline.stderr
    monkeypatch.setenv("VCD_REMOTE_CACHE_BYTES", "0")      # no disk cache: the server is needed
    r = _vcd("info", url, "--json")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_remote_cache_stays_under_its_cap(v3_scroll, tmp_path, monkeypatch):
    """A cap below the volume's size: every read is right, the directory never holds more than the cap
    (checked after every chunk batch), the least recently used files go first."""
    pytest.importorskip("aiohttp")
    vp, v3, datas = v3_scroll
    cap = _stored_bytes(v3 / "0") // 2
    monkeypatch.setenv("VCD_REMOTE_CACHE_BYTES", str(cap))
    with http_server(vp / "volumes") as base:
        vol = open_volume(f"{base}/synth_pred_v3.zarr", cache_root=tmp_path / "cache")
        cache = vol.levels[0].array.store_path.store.cache
        assert cache.max_bytes == cap
        lvl = vol.levels[0]
        grid = list(np.ndindex(*lvl.chunk_grid))
        for rep in range(2):
            for i in range(0, len(grid), 6):
                got = lvl.read_chunks(grid[i:i + 6])
                for c, d in zip(grid[i:i + 6], got):
                    want = datas[0][lvl._box(c)]
                    assert (d is None and not want.any()) or np.array_equal(d[tuple(slice(0, n) for n in want.shape)], want)
                assert cache.size_on_disk() <= cap
        assert int((cache.dir / ".size").read_text()) >= cache.size_on_disk()
        # two processes sharing the cache, each reading everything: still within the cap
        code = ("import sys; from vcd.formats.volume import open_volume; v = open_volume(sys.argv[1], cache_root=sys.argv[2]);"
                "[l.read_all() for l in v.levels]")
        procs = [subprocess.Popen([sys.executable, "-c", code, f"{base}/synth_pred_v3.zarr", str(tmp_path / "cache")],
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in procs:
            assert p.wait(300) == 0, p.stderr.read()
    assert cache.size_on_disk() <= cap


def test_disk_cache_evicts_least_recently_used(tmp_path):
    from vcd.formats.remotecache import ABSENT, DiskCache
    cache = DiskCache(tmp_path / "c", max_bytes=1000)
    for name in "abc":
        cache.put(name, name.encode() * 300)
    cache.put("gone", None)
    for i, name in enumerate("abc"):   # a older than b older than c
        os.utime(cache._path(name), (1000 + i, 1000 + i))
    assert cache.get("a") == b"a" * 300       # a hit makes a the youngest
    cache.put("d", b"d" * 300)               # 1200 > 1000: evict the oldest down to 900 - 300: b
    assert cache.get("b") is None and cache.get("c") == b"c" * 300
    assert cache.get("a") == b"a" * 300 and cache.get("d") == b"d" * 300 and cache.get("gone") is ABSENT
    assert cache.size_on_disk() <= 1000
    cache._path("a").unlink()                 # vanished (another process, by hand): a miss, no error
    assert cache.get("a") is None
    cache.put("huge", b"x" * 2000)            # over the cap: not kept
    assert cache.get("huge") is None and cache.size_on_disk() <= 1000


def test_dropped_connection_is_retried_never_zeros_never_cached_torn(v3_scroll, tmp_path, caplog):
    """Every chunk's first transfer is cut half-way: each is retried (one warning line each), the data
    equal the local volume's, and what the cache keeps is whole. (Chunks are retried one by one: when a
    whole batch was retried, its first failure ended the attempt before the batch's other chunks had
    been asked for, so under load all 4 attempts could meet a first transfer and give up.)"""
    pytest.importorskip("aiohttp")
    vp, v3, datas = v3_scroll
    from vcd.formats import zarrio
    old = zarrio.RETRY_WAIT_S
    zarrio.RETRY_WAIT_S = 0.01
    try:
        with http_server(vp / "volumes", drop_first=True) as base:
            vol = open_volume(f"{base}/synth_pred_v3.zarr", cache_root=tmp_path / "cache")
            with caplog.at_level("WARNING", logger="vcd.formats.zarrio"):
                got = vol.levels[0].read_all()
    finally:
        zarrio.RETRY_WAIT_S = old
    np.testing.assert_array_equal(got, datas[0])
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries and all("\n" not in m for m in retries)
    again = open_volume(f"{base}/synth_pred_v3.zarr", cache_root=tmp_path / "cache")   # offline, from the cache
    np.testing.assert_array_equal(again.levels[0].read_all(), datas[0])


def test_edge_chunk_padding_reads_zero(tmp_path):
    """An edge chunk is stored full-size; whatever its writer put past the array's edge reads 0."""
    from vcd.formats.zarrio import create_array, write_array
    arr = create_array(tmp_path / "a", (40, 40, 40), chunks=(32, 32, 32))
    write_array(arr, np.full((40, 40, 40), 5, np.uint8))
    codec = arr.array.metadata.compressor
    (tmp_path / "a" / "1" / "1" / "1").write_bytes(codec.encode(np.full((32, 32, 32), 7, np.uint8).tobytes()))
    from vcd.formats.zarrio import ZarrLevel
    chunk = ZarrLevel.open(tmp_path / "a").read_chunk(1, 1, 1)
    assert chunk.shape == (32, 32, 32) and (chunk[:8, :8, :8] == 7).all()
    assert chunk.sum() == 7 * 8 ** 3


def test_unwritable_cache_reads_on(v3_scroll, tmp_path, caplog):
    """A cache directory that cannot be written (full disk, read-only mount; here its lock file cannot be
    opened): one warning, the data are still read."""
    pytest.importorskip("aiohttp")
    vp, _, datas = v3_scroll
    with http_server(vp / "volumes") as base:
        vol = open_volume(f"{base}/synth_pred_v3.zarr", cache_root=tmp_path / "cache")
        lock = tmp_path / "cache" / "remote-chunks" / ".lock"
        lock.unlink()
        lock.mkdir()                                    # open(".lock") now fails with an OSError
        with caplog.at_level("WARNING", logger="vcd.formats.remotecache"):
            np.testing.assert_array_equal(vol.levels[0].read_all(), datas[0])
    assert sum("not kept" in r.getMessage() for r in caplog.records) == 1
