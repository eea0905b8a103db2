"""Issue 14 items 5–6: the overlap linker never crashes, and patches of different grid steps are handled.

The linker is fed ≥ 1,000 seeded random patches — smooth sheets at every scale, degenerate grids
(one point, one row, one column, repeated, collinear, flat in x/y/z, mostly invalid, z <= 0, ±inf,
an outlier point) and crushed-spiral patches (20-voxel grids on an elliptical, displaced spiral,
squashed flat and pressed into a box so that neighbouring grid points coincide) — and every pair
test must equal a brute-force reference (every triangle of every quad) and never raise; likewise
20-voxel reference patches on the realistic family's crushed, tilted spiral. The CLI and the
overlap job run on such surfaces written to disk. Grid steps (meta.json ``scale``): the linker links
across steps; the tracer's loader refuses a seed whose step is not ``src_step`` with one line, and a
trace over a collection of mixed steps stays on the sheet. Units: voxels; grids are
``[row, col] = (x, y, z)``, invalid = -1.
"""

from __future__ import annotations

import json
import math
import shutil

import numba as nb
import numpy as np
import pytest
import tifffile

from vcd.cli.main import main as vcd_main
from vcd.errors import InputError
from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_surface, write_surface
from vcd.grow.linking import OVERLAP_TOL, SurfaceSearch, link_new_patch, surfaces_overlap
from vcd.jobs import JobContext
from vcd.jobs.overlap import run as overlap_job
from vcd.kernels.pointsearch import _closest_on_triangle, point_triangle_dist2
from vcd.trace.patches import PatchSet
from vcd.trace.run import run_trace

CENTRE = np.array([60.0, 60.0, 60.0])


# ------------------------------------------------------------------------------ brute-force references

@nb.njit
def _brute_within(queries, grid, valid, tol, min_hits):
    """Queries within ``tol`` of any valid vertex or any triangle of a complete quad (no hash)."""
    R, C = valid.shape
    hits = 0
    for i in range(queries.shape[0]):
        px, py, pz = queries[i, 0], queries[i, 1], queries[i, 2]
        hit = False
        for r in range(R):
            for c in range(C):
                if valid[r, c] and (grid[r, c, 0] - px) ** 2 + (grid[r, c, 1] - py) ** 2 + \
                        (grid[r, c, 2] - pz) ** 2 <= tol * tol:
                    hit = True
        for r in range(R - 1):
            for c in range(C - 1):
                if hit or not (valid[r, c] and valid[r + 1, c] and valid[r, c + 1] and valid[r + 1, c + 1]):
                    continue
                d1 = point_triangle_dist2(px, py, pz, grid[r, c], grid[r, c + 1], grid[r + 1, c])
                d2 = point_triangle_dist2(px, py, pz, grid[r + 1, c + 1], grid[r + 1, c], grid[r, c + 1])
                hit = min(d1, d2) <= tol * tol
        if hit:
            hits += 1
            if hits >= min_hits:
                return hits
    return hits


def _reference_overlap(a: SurfaceSearch, b: SurfaceSearch, min_hits: int = 3) -> bool:
    for s, t in ((a, b), (b, a)):
        pts = s.sample_points()
        if len(pts) >= min_hits and _brute_within(pts, t.grid, t.valid, OVERLAP_TOL, min_hits) >= min_hits:
            return True
    return False


def _dense_triangle_dist(p, a, b, c, n=80):
    """Distance from p to a dense barycentric sampling of triangle (a, b, c) (an upper bound)."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    s, t = i[keep] / n, j[keep] / n
    pts = a + s[:, None] * (b - a) + t[:, None] * (c - a)
    return float(np.sqrt(((pts - p) ** 2).sum(1).min()))


# ------------------------------------------------------------------------------ patch generators

def _frame(rng, flat_axis=None):
    """Two orthonormal tangents (u, v) and the normal; with ``flat_axis`` the sheet lies in that axis' plane."""
    m = rng.normal(size=(2, 3))
    if flat_axis is not None:
        m[:, flat_axis] = 0.0
    u = m[0] / np.linalg.norm(m[0])
    v = m[1] - (m[1] @ u) * u
    v /= np.linalg.norm(v)
    return u, v, np.cross(u, v)


def sheet(rng, rows, cols, step, centre=CENTRE, flat_axis=None, bend=None, noise=0.0):
    """A gently curved sheet ``rows × cols`` with points ``step`` voxels apart around ``centre``."""
    u, v, n = _frame(rng, flat_axis)
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r, c = (r - (rows - 1) / 2) * step, (c - (cols - 1) / 2) * step
    bend = rng.uniform(-0.02, 0.02) / max(step, 1e-9) if bend is None else bend
    g = centre + r[..., None] * u + c[..., None] * v + (bend * (r ** 2 + c ** 2))[..., None] * n
    if flat_axis is not None:  # exactly flat, not just to rounding
        g[..., flat_axis] = centre[flat_axis]
    g += rng.normal(scale=noise, size=g.shape)
    return g.astype(np.float32)


def crushed_patch(rng, step=20.0, rows=5, cols=24, crush=None, wall=None):
    """A 20-voxel reference patch on an elliptical, displaced spiral (r = 10 + 16·θ/2π), squashed
    along y by ``crush`` (0 = flat: neighbouring wraps coincide) and shifted with z, then pressed into
    a box of half-width ``wall`` voxels in x and y (points beyond it land on its walls, so neighbouring
    grid points coincide). Columns are spaced by arc length of the round spiral."""
    crush = float(rng.choice([0.0, 1e-7, 0.02, 0.1, 0.3])) if crush is None else crush
    wall = [None, 12.0, 25.0][int(rng.integers(0, 3))] if wall is None else wall
    th, z0 = rng.uniform(0, 6 * math.pi), rng.uniform(1, 20)
    ths = [th]
    for _ in range(cols - 1):
        ths.append(ths[-1] + step / max(10 + 16 * ths[-1] / (2 * math.pi), 1.0))
    ths = np.array(ths)
    z = z0 + step * np.arange(rows)
    rad = 10 + 16 * ths / (2 * math.pi)
    x = 60 + rad[None, :] * np.cos(ths)[None, :] + 0.15 * z[:, None]
    y = 60 + crush * rad[None, :] * np.sin(ths)[None, :] - 0.1 * z[:, None]
    if wall:
        x, y = np.clip(x, 60 - wall, 60 + wall), np.clip(y, 60 - wall, 60 + wall)
    return np.stack(np.broadcast_arrays(x, y, z[:, None]), axis=-1).astype(np.float32)


def random_patch(rng, kind: str) -> np.ndarray:
    """One patch of ``kind`` (float32 ``[rows, cols, 3]``, -1 invalid)."""
    R, C = int(rng.integers(2, 11)), int(rng.integers(2, 11))
    step = float(10 ** rng.uniform(-0.3, 1.2))
    if kind == "sheet":
        return sheet(rng, R, C, step, CENTRE + rng.normal(scale=8, size=3))
    if kind == "tiny":
        return sheet(rng, R, C, float(10 ** rng.uniform(-6, -2)), CENTRE + rng.normal(scale=1e-3, size=3))
    if kind == "huge":
        mag = float(10 ** rng.uniform(5, 37.5))
        return sheet(rng, R, C, mag * float(rng.choice([1e-6, 1e-2, 0.3])), np.full(3, mag), bend=0.0)
    if kind == "single":
        return sheet(rng, 1, 1, step, CENTRE + rng.normal(size=3))
    if kind == "row":
        return sheet(rng, 1, C, step, CENTRE + rng.normal(size=3))
    if kind == "col":
        return sheet(rng, R, 1, step, CENTRE + rng.normal(size=3))
    if kind == "same":
        return np.broadcast_to((CENTRE + rng.normal(size=3)).astype(np.float32), (R, C, 3)).copy()
    if kind == "repeated":
        g = sheet(rng, R, C, step, CENTRE + rng.normal(scale=4, size=3))
        for _ in range(int(rng.integers(1, R * C + 1))):  # copy a neighbour's point (rows, cols, single points)
            r, c = int(rng.integers(0, R)), int(rng.integers(0, C))
            g[r, c] = g[max(r - int(rng.integers(0, 2)), 0), max(c - 1, 0)]
        if rng.random() < 0.3:
            g[1:] = g[:1]  # every row the same
        return g
    if kind == "collinear":
        d = rng.normal(size=3)
        t = rng.choice([np.add.outer(np.arange(R), np.arange(C)), np.add.outer(np.arange(R) * C, np.arange(C))])
        return (CENTRE + rng.normal(size=3) + step * 0.3 * t[..., None] * d / np.linalg.norm(d)).astype(np.float32)
    if kind in ("flat_x", "flat_y", "flat_z"):
        return sheet(rng, R, C, step, CENTRE + rng.normal(scale=4, size=3), flat_axis="xyz".index(kind[-1]), bend=0.0)
    if kind == "invalid":
        g = sheet(rng, R, C, step, CENTRE + rng.normal(scale=4, size=3))
        g[rng.random((R, C)) < rng.uniform(0.5, 1.0)] = -1
        g[..., 2][rng.random((R, C)) < 0.2] = rng.choice([0.0, -5.0])  # z <= 0: invalid too
        g[..., 0][rng.random((R, C)) < 0.1] = -1  # x = -1 alone marks invalid
        return g
    if kind == "nonfinite":
        g = sheet(rng, R, C, step, CENTRE + rng.normal(scale=4, size=3))
        g[rng.random((R, C, 3)) < 0.15] = rng.choice([np.inf, -np.inf])
        return g
    if kind == "quantized":
        return (np.round(sheet(rng, R, C, step, CENTRE + rng.normal(scale=4, size=3)) / 4.0) * 4.0).astype(np.float32)
    if kind == "outlier":  # one or two points thrown far (their quads get very long edges)
        g = sheet(rng, max(R, 4), max(C, 4), step, CENTRE + rng.normal(scale=4, size=3))
        for _ in range(int(rng.integers(1, 3))):
            g[int(rng.integers(0, g.shape[0])), int(rng.integers(0, g.shape[1]))] += rng.normal(scale=300, size=3)
        return g
    if kind == "crushed":
        return crushed_patch(rng, rows=int(rng.integers(2, 6)), cols=int(rng.integers(2, 25)))
    raise ValueError(kind)


KINDS = ["sheet", "tiny", "huge", "single", "row", "col", "same", "repeated", "collinear", "flat_x", "flat_y",
         "flat_z", "invalid", "nonfinite", "quantized", "outlier", "crushed"]


def _twin(rng, g: np.ndarray) -> np.ndarray:
    """A patch that shares a block of ``g``'s vertices (so the two must link when that block has ≥ 3 samples)."""
    R, C = g.shape[:2]
    r0, c0 = int(rng.integers(0, R)), int(rng.integers(0, C))
    return np.ascontiguousarray(g[r0:, c0:])


# ------------------------------------------------------------------------------ kernels

def test_degenerate_triangle_no_zero_division():
    """The ZeroDivisionError of issue 14: a quad with a repeated corner (P00 == P01) made
    ``point_triangle_dist2`` divide 0 by 0 for any query beside it."""
    g = np.zeros((2, 2, 3))
    g[0, 0] = g[0, 1] = (0, 0, 10)
    g[1, 0], g[1, 1] = (0, 5, 10), (5, 5, 10)
    s = SurfaceSearch.from_points(g)
    q = np.array([[0.5, 3, 10.5], [0.5, 3, 12.5], [20, 20, 10]])
    assert s.count_within(q) == 1  # 0.5 and 2.5 voxels off the sheet, and far away
    np.testing.assert_allclose(s.distance(q[:2]), [0.5, 2.5], atol=1e-9)
    crushed = crushed_patch(np.random.default_rng(5), crush=0.0, wall=12.0)
    assert (np.diff(crushed, axis=1) == 0).all(axis=-1).any()  # the crushed patch really repeats points
    a, b = SurfaceSearch.from_points(crushed), SurfaceSearch.from_points(crushed[:, 3:])
    assert surfaces_overlap(a, b) and surfaces_overlap(b, a)


def test_triangle_distance_on_degenerate_triangles():
    """point_triangle_dist2 and _closest_on_triangle agree with a dense sampling of the triangle,
    also when corners repeat, are collinear, or form a sliver."""
    rng = np.random.default_rng(0)
    tmp = np.empty(3)
    for i in range(300):
        a, b, c = rng.normal(scale=5, size=(3, 3))
        kind = i % 5
        if kind == 1:
            b = a.copy()
        elif kind == 2:
            b = c = a.copy()
        elif kind == 3:
            c = a + rng.uniform(-2, 3) * (b - a)  # collinear
        elif kind == 4:
            c = a + 0.5 * (b - a) + 1e-9 * rng.normal(size=3)  # sliver
        p = rng.normal(scale=6, size=3)
        ref = _dense_triangle_dist(p, a, b, c)
        d1 = math.sqrt(point_triangle_dist2(p[0], p[1], p[2], a, b, c))
        d2 = math.sqrt(_closest_on_triangle(p[0], p[1], p[2], a, b, c, tmp))
        tol = 0.02 * max(np.ptp([a, b, c], axis=0).max(), 1e-9) + 1e-9
        assert d1 <= ref + 1e-9 and ref - d1 <= tol, (i, d1, ref)
        assert abs(d2 - d1) <= 1e-6 * max(1.0, d1), (i, d1, d2)
        assert abs(np.linalg.norm(tmp - p) - d2) <= 1e-6 * max(1.0, d2)  # the point returned is that far


# ------------------------------------------------------------------------------ the property test

def test_linker_property_random_degenerate_crushed():
    """≥ 1,000 seeded random patches of every kind; each pair test equals the brute-force reference,
    is symmetric, and never raises. Known answers: a patch and a part of it sharing ≥ 3 samples link;
    the same patch moved 10 voxels along its normal (or far away) does not."""
    rng = np.random.default_rng(14)
    patches = [random_patch(rng, KINDS[i % len(KINDS)]) for i in range(1190)]
    searches = [SurfaceSearch.from_points(g) for g in patches]
    counts = {"linked": 0, "not": 0, "twins": 0, "apart": 0}
    for i, (g, s) in enumerate(zip(patches, searches)):
        t = searches[(i + 1) % len(searches)]  # neighbouring kinds: sheets against degenerate grids
        got = surfaces_overlap(s, t)
        assert got == _reference_overlap(s, t) == surfaces_overlap(t, s), (i, KINDS[i % len(KINDS)])
        counts["linked" if got else "not"] += 1
        tw = SurfaceSearch.from_points(_twin(rng, g))
        got = surfaces_overlap(s, tw)
        assert got == _reference_overlap(s, tw), (i, "twin")
        if len(tw.sample_points()) >= 3:
            assert got, (i, KINDS[i % len(KINDS)], "a patch must link to a part of itself")
            counts["twins"] += 1
        if KINDS[i % len(KINDS)] == "sheet":  # a flat sheet and its copies moved along the normal
            _, _, n = _frame(np.random.default_rng(i))
            flat = sheet(np.random.default_rng(i), *g.shape[:2], 3.0, bend=0.0)
            fs = SurfaceSearch.from_points(flat)
            for off, want in ((1.5, True), (10.0, False)):
                moved = SurfaceSearch.from_points(flat + (off * n).astype(np.float32))
                assert surfaces_overlap(fs, moved) == _reference_overlap(fs, moved) == want, (i, off)
            counts["apart"] += 1
    print(counts)
    assert counts["linked"] >= 100 and counts["not"] >= 100 and counts["twins"] >= 400


def test_realistic_crushed_spiral_reference_patches():
    """Issue 14's case: 20-voxel, 24-column reference patches on the realistic family's crushed,
    displaced, tilted spiral (seed 3: ellipticity 0.21, displacement 0.42, tilt 8°). Every pair
    equals the brute-force reference; a patch and the same stretch of sheet 40 voxels higher link."""
    from vcd.synth.realistic import build_realistic
    t = build_realistic((100, 192, 192), seed=3)
    rng = np.random.default_rng(1)
    grids = []
    while len(grids) < 48:
        th = rng.uniform(t.theta0 + 2 * math.pi, t.theta0 + 8 * math.pi)
        if not 20 <= t.radius(th, 50) <= 85:
            continue
        ths = [th]
        for _ in range(23):
            ths.append(ths[-1] + 20 / max(t.radius(ths[-1], 50), 1.0))
        z0 = float(rng.uniform(2, 8))
        for dz in (0.0, 40.0):  # the same stretch twice, 40 voxels apart in z: they share 40 voxels
            grids.append(t.sample_grid(th, ths[-1] - 1e-9, z0 + dz, z0 + dz + 40 + 1e-9, 20.0)[:, :24])
    S = [SurfaceSearch.from_points(g) for g in grids]
    links = 0
    for i in range(len(S)):
        for j in range(i + 1, len(S)):
            got = surfaces_overlap(S[i], S[j])
            assert got == _reference_overlap(S[i], S[j]), (i, j)
            links += got
        if i % 2 == 0 and (grids[i][-1, :, 0] != -1).sum() >= 3:
            assert surfaces_overlap(S[i], S[i + 1]), i  # shares its last row with its twin
    assert links >= 24


def test_plane_offsets_known_answers():
    """A flat sheet and a copy moved along its normal: linked up to ``OVERLAP_TOL`` voxels apart, not beyond;
    at a coarse (20-voxel) and a fine (1-voxel) grid against each other."""
    rng = np.random.default_rng(3)
    u, v, n = _frame(rng)
    for off, want in ((0.0, True), (1.9, True), (2.1, False), (10.0, False)):
        for fine_step in (1.0, 20.0):
            r, c = np.mgrid[0:5, 0:5].astype(np.float64) * 20.0
            coarse = CENTRE + r[..., None] * u + c[..., None] * v
            k = int(80 / fine_step) + 1
            r, c = np.mgrid[0:k, 0:k].astype(np.float64) * fine_step
            fine = CENTRE + 5 * u + 5 * v + r[..., None] * u + c[..., None] * v + off * n
            a, b = SurfaceSearch.from_points(coarse), SurfaceSearch.from_points(fine)
            assert surfaces_overlap(a, b) == surfaces_overlap(b, a) == want, (off, fine_step)


def test_outlier_point_quads_still_found():
    """A flat 20×20 sheet with one point thrown 3,000 voxels away: its long quads are tested one by one
    (not by widening every hash search), so a patch touching only those long triangles still links,
    and one beside them does not."""
    r, c = np.mgrid[0:20, 0:20].astype(np.float64) * 2.0
    g = np.stack([100 + c, 100 + r, 50 + 0 * r], -1)
    g[10, 10] = (100 + 20, 100 + 20, 3050.0)  # straight up from its own place
    s = SurfaceSearch.from_points(g)
    assert len(s.prepare()._hash[1]) == 4  # the outlier's four quads are split off
    for dz, off, want in ((1000.0, 0.0, True), (1000.0, 30.0, False)):
        # a small sheet at z = 1050 crossing the spike (the spike is ~0.7 voxels wide there)
        pr, pc = np.mgrid[0:3, 0:3].astype(np.float64) * 1.0
        probe = np.stack([119 + pc + off, 119 + pr, 50 + dz + 0 * pr], -1)
        t = SurfaceSearch.from_points(probe)
        assert surfaces_overlap(s, t) == _reference_overlap(s, t) == want, off


# ------------------------------------------------------------------------------ on disk: CLI and job

def _write_raw(d, pts, scale=(1.0, 1.0), meta_extra=None):
    """A tifxyz written field by field (also shapes ``write_surface`` would refuse)."""
    d.mkdir(parents=True)
    for i, c in enumerate("xyz"):
        tifffile.imwrite(d / f"{c}.tif", np.asarray(pts[..., i] if pts.ndim == 3 else pts, dtype=np.float32))
    bbox = [[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]]
    meta = {"format": "tifxyz", "type": "seg", "uuid": d.name, "scale": list(scale), "bbox": bbox, "source": "vcd_grow"}
    (d / "meta.json").write_text(json.dumps(dict(meta, **(meta_extra or {}))))


def test_cli_and_overlap_job_never_raise(tmp_path, capsys):
    """Random, degenerate and crushed patches (various scales) written to disk, plus surfaces the formats
    layer rejects: the overlap job links every accepted surface and skips the others with one line;
    ``vcd seg-add-overlap`` exits 0 on accepted surfaces and prints one ``error:`` line otherwise."""
    rng = np.random.default_rng(7)
    paths = tmp_path / "paths"
    names = []
    for i in range(119):
        g = random_patch(rng, KINDS[i % len(KINDS)])
        for ax in (0, 1):  # the reader refuses one-row / one-column tifs: pad with invalid points
            if g.shape[ax] < 2:
                g = np.concatenate([g, np.full_like(g, -1)], axis=ax)
        step = float(rng.choice([1.0, 5.0, 20.0]))
        names.append(write_surface(paths / f"auto_grown_{i:017d}", g, {"scale": [1 / step, 1 / step],
                                                                       "source": "vcd_grow"}).name)
    bad = {"auto_grown_90000000000000001": dict(pts=np.full((4, 4, 3), np.nan)),             # NaN
           "auto_grown_90000000000000002": dict(pts=np.ones((1, 6, 3)) * 50),                # one row (squeezed)
           "auto_grown_90000000000000003": dict(pts=np.ones((4, 4, 3)) * 50, scale=(0.0, 1.0))}  # bad scale
    for name, kw in bad.items():
        _write_raw(paths / name, **kw)
    a = write_surface(paths / "auto_grown_80000000000000001", sheet(rng, 6, 6, 3.0), {"scale": [1 / 3, 1 / 3],
                                                                                      "source": "vcd_grow"})
    b = write_surface(paths / "auto_grown_80000000000000002", np.ascontiguousarray(read_surface(a).points[2:, 2:]),
                      {"scale": [1 / 3, 1 / 3], "source": "vcd_grow"})
    far = write_surface(paths / "auto_grown_80000000000000003", read_surface(a).points + np.float32(500),
                        {"scale": [1 / 3, 1 / 3], "source": "vcd_grow"})
    warnings = []
    ctx = JobContext()
    ctx.warn = warnings.append
    for name in names + [a.name, b.name, far.name]:
        res = overlap_job({"paths": str(paths), "segment": name}, ctx)
        assert res["segment"] == name
    assert b.name in read_overlaps(a) and a.name in read_overlaps(b) and far.name not in read_overlaps(a)
    assert not read_overlaps(far) - {n for n in names}  # the far copy links at most to random patches
    assert warnings and all("\n" not in w and w.startswith("skipping auto_grown_9") for w in warnings)
    assert {w.split(":")[0] for w in warnings} == {f"skipping {n}" for n in bad}
    for name in names:  # links are symmetric and equal the pair tests
        for other in read_overlaps(paths / name):
            assert name in read_overlaps(paths / other)
    capsys.readouterr()
    for name in names[::6] + [a.name]:
        assert vcd_main(["seg-add-overlap", str(paths), str(paths / name)]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"{name}: ") and "Traceback" not in err
        assert all(line.startswith("warning: skipping auto_grown_9") for line in err.splitlines())
    for name in bad:
        assert vcd_main(["seg-add-overlap", str(paths), str(paths / name)]) == 1
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and name in err
        with pytest.raises(Exception) as exc:
            overlap_job({"paths": str(paths), "segment": name}, ctx)
        assert exc.type.__name__ == "FormatError"


# ------------------------------------------------------------------------------ grid mismatch (scale)

def _cylinder(step_col, step_row, rows_vx=60.0, cols_vx=60.0, radius=40.0, th0=0.3, dr=0.0):
    """A cylinder patch (axis along z through CENTRE) sampled ``step_col`` voxels of arc × ``step_row`` of z."""
    ths = th0 + np.arange(0, cols_vx + 1e-6, step_col) / radius
    zs = 10 + np.arange(0, rows_vx + 1e-6, step_row)
    r = radius + dr
    x, z = CENTRE[0] + r * np.cos(ths)[None, :], zs[:, None]
    y = CENTRE[1] + r * np.sin(ths)[None, :]
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1).astype(np.float32)


def test_linker_links_patches_of_different_grid_steps(tmp_path):
    """Grid steps 2, 5 and 20 voxels (meta.json scale 0.5, 0.2, 0.05) on one sheet link; a 20-voxel
    patch 6 voxels outside the sheet does not (the test is geometric: no resampling needed)."""
    paths = tmp_path / "paths"
    made = {}
    for step, th0, dr in ((2.0, 0.3, 0.0), (5.0, 0.9, 0.0), (20.0, 0.6, 0.0), (20.0, 0.6, 6.0)):
        name = f"auto_grown_{len(made):017d}"
        write_surface(paths / name, _cylinder(step, step, th0=th0, dr=dr), {"scale": [1 / step, 1 / step],
                                                                             "source": "vcd_grow"})
        made[name] = (step, dr)
    for name in made:
        link_new_patch(paths, name)
    assert read_overlaps(paths / "auto_grown_00000000000000002") == {"auto_grown_00000000000000000",
                                                                     "auto_grown_00000000000000001"}
    assert read_overlaps(paths / "auto_grown_00000000000000003") == set()


def _collection(tmp_path, steps):
    paths = tmp_path / "paths"
    for i, (step, th0) in enumerate(steps):
        write_surface(paths / f"auto_grown_{i:017d}", _cylinder(step, step, th0=th0), {"scale": [1 / step, 1 / step],
                                                                                    "source": "vcd_grow"})
    return paths


def test_tracer_loader_refuses_a_seed_of_another_grid_step(tmp_path):
    """PatchSet.load with src_step 5: patches of step 10 / 2.5 are kept as they are (one warning line);
    a seed of another step is refused with an InputError naming its meta.json and the fix."""
    paths = _collection(tmp_path, [(5.0, 0.3), (10.0, 0.6), (2.5, 0.9)])
    warns = []
    ps = PatchSet.load(paths, warn=warns.append, src_step=5.0, seed="auto_grown_00000000000000000")
    assert len(warns) == 1 and "2 patch(es)" in warns[0] and "src_step 5" in warns[0]
    for name, s in zip(ps.names, ps.search):
        np.testing.assert_array_equal(s.grid, read_surface(paths / name).points)
    with pytest.raises(InputError) as exc:
        PatchSet.load(paths, warn=warns.append, src_step=5.0, seed="auto_grown_00000000000000001")
    msg = str(exc.value)
    assert "auto_grown_00000000000000001/meta.json" in msg and '"src_step": 10' in msg and "\n" not in msg


def test_trace_follows_patches_of_mixed_grid_steps(tmp_path):
    """Issue 14's tiling (60 perfect patches, wraps 16 voxels apart) with every third patch on a
    10-voxel grid instead of 20 (meta.json scale 0.1): linked by the real linker and traced with
    src_step 20 from a 20-voxel seed — one sheet, on it (≤ 2 voxels), ≥ 1.5 wraps."""
    from tests.trace import tiling
    from vcd.synth import load_truth
    from vcd.synth.score import score_surface
    vp = tiling.spiral_scroll(tmp_path / "m.volpkg")
    t = load_truth(vp)
    names = tiling.tile(vp, 60)
    seed = tiling.middle_seed(vp, names)
    for name in names[::3]:
        if name == seed:
            continue
        g = read_surface(vp / "paths" / name).points
        v = g[..., 0] != -1
        _, ths = t.nearest(g[v])
        fine = tiling._patch(t, float(ths.min()), float(g[..., 2][v].min()), cols=2 * tiling.COLS - 1,
                             rows=2 * tiling.ROWS - 1, step=10.0)
        shutil.rmtree(vp / "paths" / name)
        tiling.add(vp, name, fine, step=10.0)
    tiling.link(vp)
    warns = []
    res = run_trace(vp / "volumes" / "synth_pred.zarr", vp / "paths", vp / "traces",
                    {"step": 1, "src_step": 20, "flip_x": False, "global_steps_per_window": 0,
                     "consensus_default_th": 6, "consensus_limit_th": 2, "snapshot_every": 0},
                    vp / "paths" / seed, warn=warns.append)
    sc = score_surface(read_surface(vp / "traces" / res["written"]).points, t)
    assert sc["jumps"] == 0 and sc["max_dist"] <= 2.0 and sc["wraps_covered"] >= 1.5, sc
    assert sum("grid step other than src_step" in w for w in warns) == 1


def test_trace_cli_grid_mismatch_is_one_line(tmp_path, capsys):
    """``vcd trace`` with src_step 20 on 5-voxel patches: one ``error:`` line, exit 1 — no traceback."""
    from vcd.synth import make_scroll
    vp = make_scroll(tmp_path / "s.volpkg", shape=(32, 64, 64), preset="easy", seed=1, ct=False)
    paths = _collection(vp, [(5.0, 0.3), (5.0, 0.6)])
    (tmp_path / "p.json").write_text(json.dumps({"step": 2, "src_step": 20}))
    rc = vcd_main(["trace", str(vp / "volumes" / "synth_pred.zarr"), str(paths), str(tmp_path / "out"),
                   str(tmp_path / "p.json"), str(paths / "auto_grown_00000000000000000")])
    _, err = capsys.readouterr()
    assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "meta.json" in err and '"src_step": 5' in err
