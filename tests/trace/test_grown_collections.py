"""Issue 14: the consensus tracer on collections *grown* by our own grower.

1. Wrong patches made the way real ones are: grown with the sheet test switched off (``sheet_gap=0``,
   VC3D-like growth) from seeds in the fused zones of a crushed, tilted spiral of the realistic family,
   checked against the ground truth to really hold sheet jumps, then mixed into the tiling's perfect
   20-voxel patches at 5 %, 10 % and 20 % of the collection, all linked with the real linker.
2. A collection grown with the default params on a realistic draw with holes and fused zones, traced
   on one sheet; and the same with one wrap's prediction cut over the whole height, so that the grown
   patches form two groups with a seam the trace must cross (heavy): the circle through the last
   corners misses the far group on the crushed sheet; the wraps beside it carry the bridge across
   (:mod:`vcd.trace.guide`).

Units: voxels; points (x, y, z); patch grids ``[row, col]``.
"""

import json
import shutil

import numpy as np
import pytest
import tifffile

from vcd.errors import InputError
from vcd.formats.tifxyz import read_surface
from vcd.formats.volume import open_volume
from vcd.grow.linking import link_new_patch
from vcd.grow.distance import DistanceField
from vcd.grow.grower import grow_patch
from vcd.synth import load_truth, make_scroll
from vcd.synth.score import score_surface

from ..grow.test_realistic import spread_seeds
from . import tiling
from .test_follow_patches import _hot_near_every_jump

#: the wrong patches are added under this prefix (sorted after the tiling's ``auto_grown_0…`` names)
WRONG = "auto_grown_8"


def _field(vp):
    f = DistanceField(open_volume(vp / "volumes" / "synth_pred.zarr").levels[0])
    f.ensure_all()
    return f


def _jumpy_patches(vp, field, t, step, generations, tries=4):
    """Patches grown with ``sheet_gap=0`` from the fused zones' centres and from points beside them
    (± half a cell along z): → list of (points, score) for those with ≥ 1 jump edge."""
    out = []
    for c in t.feature_points()["fused"]:
        for dz in (0.0, -0.5 * step, 0.5 * step):
            for k in range(tries):
                r = grow_patch(field, c + np.array([0.0, 0.0, dz]), step, generations,
                               rng=np.random.default_rng(k), sheet_gap=0)
                if r.n_corners:
                    sc = score_surface(r.points, t)
                    if sc["jumps"]:
                        out.append((r.points, sc))
    return out


@pytest.fixture(scope="module")
def fused_tiled(tmp_path_factory):
    """(volpkg, tile names, jumpy grown grids, score of the trace of the perfect patches alone): the
    realistic draw 3 (crushed, tilted, twisted; wraps 7.5-20 voxels apart) with 3 fused zones, 60
    perfect 20-voxel patches linked, and a pool of grown 20-voxel patches with sheet jumps (not yet in
    the collection). A fused zone bends the sheet over ~15 voxels, less than the patches' 20-voxel
    grid: between their vertices the perfect patches are up to ~7 voxels off the sheet there, so the
    distance bound below is "no further off than the perfect patches' own trace"."""
    root = tmp_path_factory.mktemp("fused") / "f.volpkg"
    vp = make_scroll(root, (100, 192, 192), preset="realistic", seed=3, ct=False, clean=True, n_fused=3)
    t = load_truth(vp)
    jumpy = _jumpy_patches(vp, _field(vp), t, tiling.GRID, 12)
    names = tiling.tile(vp, 60)
    tiling.link(vp)
    res = tiling.trace(vp, tiling.middle_seed(vp, names))
    base = score_surface(read_surface(vp / "traces" / res["written"]).points, t)
    base["used"] = set(json.loads((vp / "traces" / res["written"] / "vcd_provenance.json").read_text())["patches"])
    shutil.rmtree(vp / "traces")
    # the jump patches on the wraps the trace covers first (the others lie outside its reach)
    jumpy.sort(key=lambda g: not set(g[1]["wraps"]) & set(base["wraps"]))
    return vp, names, jumpy, base


def _with_grown_wrong(fused_tiled, tmp_path, share):
    """A copy of the collection with grown jump patches making up ``share`` of it, linked."""
    vp, names, jumpy, _ = fused_tiled
    dst = tmp_path / "c.volpkg"
    shutil.copytree(vp, dst, symlinks=True)
    k = int(round(share * len(names) / (1 - share)))
    assert len(jumpy) >= k, f"only {len(jumpy)} grown patches with jumps, {k} needed"
    wrong = [tiling.add(dst, f"{WRONG}{i:016d}", g) for i, (g, _) in enumerate(jumpy[:k])]
    for n in wrong:
        link_new_patch(dst / "paths", n)
    return dst, names, wrong, int(sum(sc["jumps"] for _, sc in jumpy[:k]))


@pytest.mark.parametrize("share", [pytest.param(0.05, marks=pytest.mark.heavy), 0.10,
                                   pytest.param(0.20, marks=pytest.mark.heavy)])
def test_grower_made_wrong_patches_are_outvoted(fused_tiled, tmp_path, share):
    """0 jumps and on the sheet at 5 % and 10 % grown jump patches; at 20 % every jump is on the QA map."""
    vp, names, wrong, n_jump_edges = _with_grown_wrong(fused_tiled, tmp_path, share)
    t = load_truth(vp)
    res = tiling.trace(vp, tiling.middle_seed(vp, names))
    out = vp / "traces" / res["written"]
    s = read_surface(out)
    sc = score_surface(s.points, t)
    base = fused_tiled[3]
    # wrong patches in the trace's reach: linked to a patch the perfect patches' trace used
    near = [n for n in wrong if set(json.loads((vp / "paths" / n / "overlapping.json").read_text())["overlapping"])
            & base["used"]]
    print(f"share {share}: {len(wrong)} grown patches ({len(near)} in reach) with {n_jump_edges} jump edges "
          f"-> trace {sc}; perfect patches alone: {base}")
    assert len(near) >= min(len(wrong), 3), near
    assert sc["wraps_covered"] >= 1.5, sc
    if share <= 0.10:
        assert sc["jumps"] == 0, sc
        assert sc["max_dist"] <= max(2.0, base["max_dist"] + 0.5) and sc["p95_dist"] <= 2.0, (sc, base)
    else:
        ok, cells = _hot_near_every_jump(s.points, tifffile.imread(out / "qa.tif"), t, 1)
        assert ok, (sc, cells)


# --- 2. a collection grown on the realistic family: seams where patches stop -------------------------

GROWN_STEP = 10.0  #: the grower's step_size (voxels) = the trace's src_step


def _links(paths, name):
    f = paths / name / "overlapping.json"
    return set(json.loads(f.read_text())["overlapping"]) if f.exists() else set()


@pytest.fixture(scope="module")
def grown_trace(tmp_path_factory):
    """The realistic draw 3 with its defects (holes, a fused zone, fragments, dropout): 20 patches grown
    with the default params (step 10, 25 generations) from seeds spread over the scroll, linked with
    the real linker, traced with 20-voxel cells (wraps 4-20 voxels apart) from the best-linked patch.
    → (volpkg, trace dir, score, links {patch: linked patches})."""
    vp = make_scroll(tmp_path_factory.mktemp("grown") / "g.volpkg", (100, 192, 192), preset="realistic", seed=3,
                     ct=False)
    t = load_truth(vp)
    field = _field(vp)
    names = []
    for k, p in enumerate(spread_seeds(t, n=20, margin=20)):
        r = grow_patch(field, p, GROWN_STEP, 25, rng=np.random.default_rng(k))
        if r.n_corners:
            names.append(tiling.add(vp, f"auto_grown_{k:017d}", r.points, step=GROWN_STEP))
    tiling.link(vp)
    links = {n: _links(vp / "paths", n) for n in names}
    for seed in sorted(names, key=lambda n: -len(links[n])):  # the best-linked patch that holds a seed block
        try:
            res = tiling.trace(vp, seed, step=2, src_step=GROWN_STEP)
            break
        except InputError:
            continue
    out = vp / "traces" / res["written"]
    return vp, out, score_surface(read_surface(out).points, t), links


def seam_crossings(trace_dir, links) -> list:
    """Places where the trace crosses a seam between patch groups: along a row or a column of the
    trace's corner grid, two successive supported corners (any unsupported — bridged — corners between
    them skipped) whose supporting patches are disjoint and not linked to one another (no patch on one
    side overlaps any patch on the other). → list of ((r, c), (r2, c2), side A names, side B names)."""
    npz = np.load(trace_dir / "vcd_supporters.npz")
    ids, names = npz["ids"], [str(n) for n in npz["names"]]
    sup = [[{names[i] for i in ids[r, c] if i >= 0} for c in range(ids.shape[1])] for r in range(ids.shape[0])]
    out = []
    for lines in ([[(r, c) for c in range(ids.shape[1])] for r in range(ids.shape[0])],
                  [[(r, c) for r in range(ids.shape[0])] for c in range(ids.shape[1])]):
        for line in lines:
            last = None
            for rc in line:
                a = sup[rc[0]][rc[1]]
                if not a:
                    continue
                if last is not None:
                    b = sup[last[0]][last[1]]
                    if not a & b and not any(y in links.get(x, ()) for x in b for y in a):
                        out.append((last, rc, b, a))
                last = rc
    return out


@pytest.mark.heavy  # its collection takes ~1 CPU-minute to grow; bench/trace_grown.py runs it
def test_grown_collection_trace_stays_on_one_sheet(grown_trace):
    """0 jumps and every point within 2 voxels of the sheet on grown (not sampled) patches. The draw's
    holes and fused zone are smaller than a patch, so the patches grow around them; the collection's
    only gaps between patch groups are where a wrap leaves the volume (not crossable). The seam case is
    ``test_grown_collection_with_a_cut_wrap_is_crossed``."""
    vp, out, sc, links = grown_trace
    print(f"grown collection: {len(links)} patches, trace {sc}, seams crossed {len(seam_crossings(out, links))}")
    assert sc["jumps"] == 0 and sc["max_dist"] <= 2.0, sc
    assert sc["wraps_covered"] >= 1.0, sc


def _cut_band(vp, t, th0: float, arc: float) -> float:
    """Remove the prediction over a band of one wrap, ``arc`` voxels of sheet wide (at mid height) from
    angle ``th0``, over the whole height: a hole no patch can grow around. Returns the band's width
    (radians)."""
    from vcd.formats.volume import write_ome_zarr
    vol = vp / "volumes" / "synth_pred.zarr"
    V = open_volume(vol)
    Z, Y, X = V.shape
    pred = V.read_region_u8(0, Z, 0, Y, 0, X).copy()
    width = arc / t.radius(th0, Z / 2)
    band = t.sample_grid(th0, th0 + width, -20.0, Z + 20.0, 2.0).reshape(-1, 3)
    lo = np.maximum(np.floor(band.min(0) - 8), 0).astype(int)
    hi = np.ceil(band.max(0) + 8).astype(int)
    sub = pred[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]  # a view: edits go into pred
    zz, yy, xx = np.nonzero(sub)
    _, th = t.nearest(np.stack([xx + lo[0], yy + lo[1], zz + lo[2]], 1).astype(float))
    cut = (th > th0) & (th < th0 + width)
    sub[zz[cut], yy[cut], xx[cut]] = 0
    shutil.rmtree(vol)
    write_ome_zarr(vol, pred, t.voxelsize, name="synthetic surface prediction, a band cut out", n_levels=1)
    return width


@pytest.mark.heavy
def test_grown_collection_with_a_cut_wrap_is_crossed(tmp_path):
    """Draw 3 with one wrap's prediction cut over its whole height (45 voxels of arc, 30 voxels past a
    spread seed): 16 patches grown with the default params stop at the cut — two patch groups — and the
    trace from the near side crosses to the far group: 0 jumps, within 2 voxels, a seam crossed."""
    vp = make_scroll(tmp_path / "c.volpkg", (100, 192, 192), preset="realistic", seed=3, ct=False)
    t = load_truth(vp)
    seeds = spread_seeds(t, n=16, margin=20)
    ks = 3
    th_s = float(t.nearest(seeds[ks][None])[1][0])
    th0 = th_s + 30.0 / t.radius(th_s, t.shape[0] / 2)
    width = _cut_band(vp, t, th0, 45.0)
    field = _field(vp)
    names = {}
    for k, p in enumerate(seeds):
        r = grow_patch(field, p, GROWN_STEP, 25, rng=np.random.default_rng(k))
        if r.n_corners:
            names[k] = tiling.add(vp, f"auto_grown_{k:017d}", r.points, step=GROWN_STEP)
    tiling.link(vp)
    links = {n: _links(vp / "paths", n) for n in names.values()}
    spans = []
    for n in names.values():
        s = read_surface(vp / "paths" / n)
        th = t.nearest(s.points[s.valid])[1]
        near = np.abs(th - th0) < np.pi
        if (th[near] < th0).any() and (th[near] > th0 + width).any():
            spans.append(n)
    res = tiling.trace(vp, names[ks], step=2, src_step=GROWN_STEP)
    out = vp / "traces" / res["written"]
    s = read_surface(out)
    sc = score_surface(s.points, t)
    th = t.nearest(s.points[s.points[..., 0] != -1])[1]
    seams = seam_crossings(out, links)
    print(f"cut wrap: patches across the cut {spans}; trace theta {th.min():.2f}-{th.max():.2f}, cut "
          f"{th0:.2f}-{th0 + width:.2f}, {len(seams)} seams crossed, {sc}")
    assert not spans, spans  # the cut splits the collection
    assert th.max() > th0 + width and seams, (th.max(), th0 + width, len(seams))
    assert sc["jumps"] == 0 and sc["max_dist"] <= 2.0, sc
