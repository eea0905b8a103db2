import json
import logging
import shutil

import numpy as np
import pytest
import zarr

from vcd.errors import FormatError
from vcd.formats.convert import convert_volume
from vcd.formats.volume import open_volume, write_ome_zarr
from vcd.formats.zarrio import create_array, write_array
from vcd.kernels.sample import sample_dense


def make_vol(tmp_path, data=None, **kw):
    if data is None:
        data = (np.random.default_rng(0).random((40, 50, 60)) * 255).astype(np.uint8)
    return write_ome_zarr(tmp_path / "v.zarr", data, 7.91, chunks=(16, 16, 16), **kw), data


def test_written_volume_is_vc_compatible_and_zarr_readable(tmp_path):
    vol, data = make_vol(tmp_path)
    zarray = json.loads((vol.path / "0" / ".zarray").read_text())
    assert zarray["dtype"] == "|u1" and zarray["fill_value"] == 0 and zarray["dimension_separator"] == "/"
    assert zarray["compressor"]["id"] == "blosc" and zarray["order"] == "C"
    meta = json.loads((vol.path / "meta.json").read_text())
    assert meta["format"] == "zarr" and (meta["slices"], meta["height"], meta["width"]) == (40, 50, 60)
    z = zarr.open_group(str(vol.path), mode="r", zarr_format=2)
    np.testing.assert_array_equal(z["0"][:], data)
    np.testing.assert_array_equal(vol.levels[0].read_all(), data)
    assert [l.shape for l in vol.levels] == [(40, 50, 60), (20, 25, 30), (10, 13, 15)]


def test_reads_zarr_python_written_arrays(tmp_path):
    data = (np.random.default_rng(1).random((20, 30, 40)) * 255).astype(np.uint8)
    root = tmp_path / "ext.zarr"
    import numcodecs
    for sep in (".", "/"):
        shutil.rmtree(root, ignore_errors=True)
        a = zarr.create_array(str(root / "0"), shape=data.shape, chunks=(8, 8, 8), dtype="u1", zarr_format=2,
                              compressors=numcodecs.Zlib(), fill_value=0, chunk_key_encoding={"name": "v2", "separator": sep})
        a[:] = data
        (root / "meta.json").write_text(json.dumps({"format": "zarr", "voxelsize": 3.24, "type": "vol",
                                                    "uuid": "e", "name": "e", "width": 40, "height": 30, "slices": 20}))
        np.testing.assert_array_equal(open_volume(root).levels[0].read_all(), data)


def test_trilinear_sampler_dense_and_chunked_agree(tmp_path):
    vol, data = make_vol(tmp_path)
    rng = np.random.default_rng(2)
    pts = rng.random((500, 3)) * [62, 52, 42] - 1  # (x, y, z), some outside
    s = vol.sampler(cache_bytes=16 * 16 * 16 * 10)
    got = s.sample(pts)
    np.testing.assert_allclose(got, sample_dense(data, pts), rtol=1e-5, atol=1e-4)
    # explicit check at a voxel centre and a midpoint: points are (x, y, z), arrays [z, y, x]
    assert s.sample(np.array([[5.0, 6.0, 7.0]]))[0] == data[7, 6, 5]
    mid = s.sample(np.array([[5.5, 6.0, 7.0]]))[0]
    assert mid == pytest.approx((float(data[7, 6, 5]) + data[7, 6, 6]) / 2, abs=1e-3)
    assert s.sample(np.array([[-3.0, 1.0, 1.0]]))[0] == 0.0



def _near_chunk_borders(rng, shape_zyx, n, chunk):
    """(x, y, z) points, half spread over the volume and past its faces, half within a voxel of a
    chunk border, where a cell's eight voxels straddle two chunks."""
    hi = np.asarray(shape_zyx[::-1], float)
    spread = rng.random((n, 3)) * (hi + 3) - 1.5
    border = (rng.integers(1, hi // chunk + 1, (n, 3)) * chunk - 1 + rng.random((n, 3)) * 1.999 - 0.5)
    return np.vstack([spread, np.minimum(border, hi + 1)])


def test_chunked_samplers_match_a_voxel_by_voxel_reference_at_chunk_borders(tmp_path):
    """The samplers' one-chunk fast case and the voxel-by-voxel case agree with plain numpy indexing
    of the same data, inside chunks, across chunk borders, at the volume's faces and beside chunks
    that are not loaded (distance field: far; volume: 0)."""
    from vcd.grow.distance import DistanceField
    from vcd.kernels.field import FAR, UNITS, dist_grad
    from vcd.kernels.sample import trilinear_blend
    rng = np.random.default_rng(7)
    data = np.zeros((70, 140, 100), np.uint8)                        # [z, y, x]: 2×3×2 distance chunks
    zz, yy, xx = np.mgrid[:70, :140, :100]
    data[np.abs(zz - 35 - 8 * np.sin(xx / 9.0) - 0.1 * yy) < 1.5] = 255
    vol = write_ome_zarr(tmp_path / "v.zarr", data, 7.91, chunks=(16, 32, 16), n_levels=1)
    field = DistanceField(vol.levels[0])
    field._load([(0, 0, 0), (0, 1, 0), (1, 1, 1), (0, 2, 1)])          # the others stay unloaded: far
    dense = np.full(data.shape, FAR)
    for c in zip(*np.nonzero(field.slots >= 0)):
        ext = [min(64, n - 64 * k) for k, n in zip(c, data.shape)]   # the volume's last chunks are partial
        dense[64 * c[0]:, 64 * c[1]:, 64 * c[2]:][:ext[0], :ext[1], :ext[2]] = \
            field.pool[field.slots[c]][:ext[0], :ext[1], :ext[2]]

    def reference(arr, x, y, z, outside):
        ix, iy, iz = int(np.floor(x)), int(np.floor(y)), int(np.floor(z))
        def at(k, j, i):
            inside = 0 <= k < arr.shape[0] and 0 <= j < arr.shape[1] and 0 <= i < arr.shape[2]
            return float(arr[k, j, i]) if inside else outside
        return trilinear_blend.py_func(
            at(iz, iy, ix), at(iz, iy, ix + 1), at(iz, iy + 1, ix), at(iz, iy + 1, ix + 1),
            at(iz + 1, iy, ix), at(iz + 1, iy, ix + 1), at(iz + 1, iy + 1, ix), at(iz + 1, iy + 1, ix + 1),
            x - ix, y - iy, z - iz)

    for x, y, z in _near_chunk_borders(rng, data.shape, 400, 64):
        got = dist_grad(field.pool, field.slots, field.shape, x, y, z)
        np.testing.assert_allclose(got, np.asarray(reference(dense, x, y, z, FAR)) / UNITS, atol=1e-9)
    sampler = vol.sampler(cache_bytes=16 * 32 * 16 * 8)               # holds 8 of the 45 chunks at a time
    pts = _near_chunk_borders(rng, data.shape, 400, 16)
    want = [reference(data, x, y, z, 0.0)[0] for x, y, z in pts]
    np.testing.assert_allclose(sampler.sample(pts), want, rtol=1e-6, atol=1e-4)

def _break(vol_path, what):
    zpath = vol_path / "0" / ".zarray"
    za = json.loads(zpath.read_text())
    meta = json.loads((vol_path / "meta.json").read_text())
    if what == "no_meta":
        (vol_path / "meta.json").unlink()
    elif what == "no_format":
        del meta["format"]
        (vol_path / "meta.json").write_text(json.dumps(meta))
    elif what == "float":
        za["dtype"] = "<f4"
        zpath.write_text(json.dumps(za))
    elif what == "no_scale0":
        shutil.move(vol_path / "0", vol_path / "9")
    elif what == "fill_null":
        za["fill_value"] = None
        zpath.write_text(json.dumps(za))
    elif what == "nested_no_sep":
        del za["dimension_separator"]
        zpath.write_text(json.dumps(za))
    elif what == "4d":
        za["shape"] = [1] + za["shape"]
        zpath.write_text(json.dumps(za))
    elif what == "stray_dir":
        (vol_path / ".ipynb_checkpoints").mkdir()


@pytest.mark.parametrize("what,match", [
    ("no_meta", "no meta.json"), ("no_format", "format"), ("float", "not uint8 or uint16"),
    ("no_scale0", "no scale \"0\""), ("fill_null", "fill_value is null"),
    ("nested_no_sep", "dimension_separator"), ("4d", "3-D"), ("stray_dir", "no .zarray"),
])
def test_volume_rejections_name_file_and_fix(tmp_path, what, match):
    vol, _ = make_vol(tmp_path)
    _break(vol.path, what)
    with pytest.raises(FormatError, match=match) as ei:
        open_volume(vol.path)
    assert "Fix:" in str(ei.value) and str(vol.path) in str(ei.value)


def test_uint16_read_on_the_fly_and_convert(tmp_path, caplog):
    data16 = (np.random.default_rng(3).random((30, 34, 36)) * 65535).astype(np.uint16)
    root = tmp_path / "u16.zarr"
    arr = create_array(root / "0", data16.shape, chunks=(16, 16, 16), dtype="<u2")
    write_array(arr, data16)
    (root / "meta.json").write_text(json.dumps({"format": "zarr", "voxelsize": 7.91}))
    vol = open_volume(root)
    with caplog.at_level(logging.WARNING):
        s = vol.sampler()
        v = s.sample(np.array([[3.0, 4.0, 5.0], [10.0, 11.0, 12.0]]))
        s.sample(np.array([[1.0, 1.0, 1.0]]))
    assert list(v) == [data16[5, 4, 3] // 257, data16[12, 11, 10] // 257]
    assert sum("vcd convert" in r.message for r in caplog.records) == 1  # one warning, pointing to convert
    out = convert_volume(root, tmp_path / "u8.zarr", algorithm="max", chunks=(16, 16, 16))
    v8 = open_volume(out)
    assert v8.dtype == np.uint8 and len(v8.levels) >= 2
    np.testing.assert_array_equal(v8.levels[0].read_all(), (data16 // 257).astype(np.uint8))
    np.testing.assert_array_equal(v8.levels[1].read_all()[:2, :2, :2],
                                  (data16 // 257).astype(np.uint8)[:4, :4, :4].reshape(2, 2, 2, 2, 2, 2).max(axis=(1, 3, 5)))


def test_chunk_pool_evicts_fifo_and_spares_the_batch():
    from vcd.formats.volume import ChunkPool
    pool = ChunkPool((1, 1, 4), (2, 2, 2), capacity=3)
    for i in range(3):
        pool._put((0, 0, i), np.full((2, 2, 2), i + 1, np.uint8), needed=set())
    assert list(pool.slots[0, 0]) == [0, 1, 2, -1]
    needed = pool._batch([(0, 0, 0), (0, 0, 3)])       # chunk 0 (the oldest) is needed: chunk 1 goes
    pool._put((0, 0, 3), np.full((2, 2, 2), 9, np.uint8), needed)
    assert list(pool.slots[0, 0]) == [0, -1, 2, 1] and (pool.pool[1] == 9).all() and (pool.pool[0] == 1).all()
    with pytest.raises(MemoryError, match="raise cache_size"):
        pool._batch([(0, 0, i) for i in range(4)])


def test_distance_field_evicts_through_the_shared_pool(tmp_path):
    """More distance chunks than the pool holds: loaded batch after batch, each held chunk is its own."""
    from vcd.formats.volume import write_ome_zarr
    from vcd.grow.distance import DistanceField
    data = np.zeros((64, 64, 64 * 30), np.uint8)
    data[30:33] = 255                                  # a sheet at z = 30..32 through every chunk
    vol = write_ome_zarr(tmp_path / "v.zarr", data, 7.91, n_levels=1)
    field = DistanceField(vol.levels[0], cache_bytes=0)
    assert field.capacity == 27 < field.slots.size == 30
    for start in (0, 10, 20, 3):
        batch = [(0, 0, i) for i in range(start, start + 10)]
        field._load(batch)
        for c in batch:
            np.testing.assert_array_equal(field.pool[field.slots[c]], field.compute_chunk(c))
    held = field.slots[field.slots >= 0]
    assert len(held) == 27 and len(set(held.tolist())) == 27
    chunk = field.pool[field.slots[0, 0, 3]]          # 1/8 voxel units: on the sheet 0, 30 voxels off 240
    assert chunk[31, 0, 0] == 0 and chunk[0, 0, 0] == 30 * 8


def test_convert_writes_beside_and_renames_and_reports_done(tmp_path):
    """vcd convert: the output appears only complete (a failure leaves nothing at the destination,
    no temporary directory behind) and the progress ends at 100 %."""
    import numpy as np
    from vcd.formats.volume import open_volume, write_ome_zarr
    src = tmp_path / "in.zarr"
    data = (np.arange(40 * 48 * 56) % 251).astype(np.uint8).reshape(40, 48, 56)
    write_ome_zarr(src, data, 7.91, n_levels=1)
    seen = []
    out = convert_volume(src, tmp_path / "out.zarr", chunks=(16, 16, 16), progress=lambda f, m: seen.append((f, m)))
    assert seen[-1][0] == 1.0 and seen[-1][1].startswith("done")
    assert np.array_equal(open_volume(out).levels[0].read_region(0, 40, 0, 48, 0, 56), data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    def interrupt(f, m):
        if f > 0.3:
            raise KeyboardInterrupt
    try:
        convert_volume(src, tmp_path / "cut.zarr", chunks=(16, 16, 16), progress=interrupt)
    except KeyboardInterrupt:
        pass
    assert not (tmp_path / "cut.zarr").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
