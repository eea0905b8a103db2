"""Preview content checks on a synthetic scroll (issue 9, item 3): intersections on the sheet,
one colour per patch, overlap colouring, density follows the planted patches, trace views, folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from vcd.cli.main import main
from vcd.errors import InputError
from vcd.formats.overlaps import link
from vcd.formats.tifxyz import update_meta, write_mask, write_surface
from vcd.formats.volume import open_volume
from vcd.post.coverage import collection_stats
from vcd.post.preview import (density_grid, plane_segments, preview_trace, read_layout, refresh_previews,
                              stable_color)
from vcd.synth import load_truth


def put(vp, name, th0, th1, z0, z1, step=4, root="paths", meta=None, **kw):
    t = load_truth(vp)
    m = {"scale": [1 / step, 1 / step], "source": "vcd_grow", "area_cm2": 0.01, **(meta or {})}
    (vp / root).mkdir(exist_ok=True)
    return write_surface(vp / root / name, t.sample_grid(t.theta0 + th0, t.theta0 + th1, z0, z1, step), m, **kw)


def drawn_pixels(png):
    lay = read_layout(png)
    x0, y0, w, h = lay["slice_box"]
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)[y0:y0 + h, x0:x0 + w]
    return img, np.ptp(img, axis=-1) > 40, lay  # the base slice is gray; overlays are saturated


def test_plane_segments_cut_a_flat_quad():
    pts = np.zeros((2, 2, 3), np.float32)
    pts[..., 0] = [[10, 20], [10, 20]]
    pts[..., 1] = 5
    pts[..., 2] = [[10, 10], [20, 20]]
    seg = plane_segments(pts, "z", 15)
    assert len(seg) == 2 and np.allclose(seg[..., 2], 15)
    assert np.allclose(sorted(seg[..., 0].ravel()), [10, 15, 15, 20])  # covers x 10..20 along the cut
    assert len(plane_segments(pts, "z", 25)) == 0


@pytest.mark.parametrize("axis,index", [("z", 48), ("y", 64)])
def test_slice_intersections_lie_on_the_sheet_with_a_colour_per_patch(scroll_copy, tmp_path, axis, index):
    vp = scroll_copy
    names = [put(vp, f"auto_grown_2025010100000000{i}", 2.0 + 2.5 * i, 4.0 + 2.5 * i, 8, 88).name for i in range(4)]
    out = tmp_path / "s.png"
    assert main(["preview", "slice", str(vp), "--axis", axis, "--index", str(index), "--volume", "synth_pred.zarr",
                 "--out", str(out)]) == 0
    img, drawn, lay = drawn_pixels(out)
    k = lay["scale"]
    assert k >= 1 and lay["level"] == 0 and lay["axis"] == axis
    pv = open_volume(vp / "volumes" / "synth_pred.zarr").read_region_u8(0, 96, 0, 128, 0, 128)
    pred = pv[index] if axis == "z" else pv[:, index, :]
    rows, cols = np.nonzero(drawn)
    assert len(rows) > 100
    near = ndimage.binary_dilation(pred > 0, iterations=2)  # within 2 voxels of a predicted voxel
    on_sheet = near[rows // k, cols // k]
    # the medium preset plants holes in the prediction; the patches (true sheet) span them
    t = load_truth(vp)
    vox = np.stack([cols / k, rows / k, np.full(len(rows), float(index))], 1) if axis == "z" else \
        np.stack([cols / k, np.full(len(rows), float(index)), rows / k], 1)
    d, th = t.nearest(vox)
    in_hole = np.zeros(len(rows), bool)
    for h_th, h_z, arc, ext in t.holes:
        in_hole |= (np.abs(th - h_th) * t.radius(h_th, h_z) < arc + 2) & (np.abs(vox[:, 2] - h_z) < ext + 2)
    assert (d < 2.0).mean() >= 0.99
    assert on_sheet[~in_hole].mean() >= 0.95, on_sheet[~in_hole].mean()
    assert (~in_hole).sum() > 100
    colours = {tuple(c) for c in img[drawn]}
    drawn_names = set(lay["patches"])
    assert len(drawn_names) >= 3
    assert {stable_color(n) for n in drawn_names} <= colours          # each patch in its own colour
    assert len({stable_color(n) for n in names}) == len(names)


def test_slice_coloured_by_overlap_count_and_traces_drawn(scroll_copy, tmp_path):
    vp = scroll_copy
    a = put(vp, "auto_grown_20250101000000001", 2.0, 4.0, 8, 88).name
    b = put(vp, "auto_grown_20250101000000002", 3.0, 5.0, 8, 88).name
    c = put(vp, "auto_grown_20250101000000003", 9.0, 11.0, 8, 88).name
    link(vp / "paths", a, [b])
    (vp / "expand.json").write_text(json.dumps({"tgt_overlap_count": 1}))
    put(vp, "auto_trace_20250101000000009", 2.5, 4.5, 10, 80, root="traces", meta={"source": "vcd_trace"})
    out = tmp_path / "o.png"
    assert main(["preview", "slice", str(vp), "--index", "40", "--color-by", "overlaps", "--out", str(out)]) == 0
    img, drawn, lay = drawn_pixels(out)
    assert lay["volume"] == "synth_ct.zarr" and lay["traces"] == ["auto_trace_20250101000000009"]
    cols = {tuple(x) for x in img[drawn]}
    red, blue = (255, 25, 25), (25, 25, 255)    # count_color: tgt reached → red, 0 links → blue
    assert any(abs(np.array(x) - red).max() < 5 for x in cols)
    assert any(abs(np.array(x) - blue).max() < 5 for x in cols)
    assert c in lay["patches"]


def test_density_is_higher_where_more_patches_were_planted(scroll_copy, tmp_path):
    vp = scroll_copy
    for i in range(3):  # region A: three patches on the same stretch of sheet
        put(vp, f"auto_grown_2025010100000000{i}", 8.0 + 0.1 * i, 9.5 + 0.1 * i, 10, 80)
    put(vp, "auto_grown_20250101000000005", 11.0, 12.5, 10, 80)  # region B: one patch
    a = [f"auto_grown_2025010100000000{i}" for i in range(3)]
    link(vp / "paths", a[0], a[1:])
    link(vp / "paths", a[1], a[2:])  # region A's patches have 2 links each
    t = load_truth(vp)
    pa, pb = t.point(t.theta0 + 8.8, 45), t.point(t.theta0 + 11.7, 45)
    g = density_grid(vp, bin_size=8, tgt=2)
    at = lambda p, k="counts": g[k][int(p[2] // 8), int(p[1] // 8), int(p[0] // 8)]
    assert at(pa) == 3 and at(pb) == 1
    assert at(pa, "under") == 0 and at(pb, "under") == 1  # only B's patch is below target (< 2 links)
    st = g["stats"]
    assert st["patches"] == 4 and st["max_count"] == 3
    # "below target" is the scheduler's measure: the share of patches with fewer than tgt links
    assert st["below_target_fraction"] == 1 - collection_stats(vp, 2)["density"] == 0.25
    assert st["patches_below_target"] == 1
    out = tmp_path / "d.png"
    assert main(["preview", "density", str(vp), "--bin", "8", "--tgt", "2", "--out", str(out)]) == 0
    lay = read_layout(out)
    xz = next(p for p in lay["panels"] if p["projected_axis"] == "y" and p["row"] == "count")
    img = np.asarray(Image.open(out).convert("L")).astype(int)
    x0, y0, _, _ = xz["box"]
    k = xz["pixels_per_bin"]
    lum = lambda p: img[y0 + int(p[2] // 8) * k + k // 2, x0 + int(p[0] // 8) * k + k // 2]
    assert lum(pa) > lum(pb)  # brighter where more patches were planted


def _make_trace(vp, patches):
    tr = put(vp, "auto_trace_20250101000000009", 3.0, 5.0, 20, 60, root="traces", meta={"source": "vcd_trace"},
             extra_files={"qa.tif": _qa_bytes(),
                          "vcd_provenance.json": json.dumps({
                              "version": 1, "volume": str(vp / "volumes" / "synth_ct.zarr"),
                              "src_dir": str(vp / "paths"),
                              "patches": {p: {"mask_sha1": None, "tags": []} for p in patches}}).encode()})
    return tr


def _qa_bytes():
    import io
    q = np.zeros((10, 12), np.float32)
    q[4:6, 5:7] = 1.0
    q[0, :] = -1
    b = io.BytesIO()
    tifffile.imwrite(b, q)
    return b.getvalue()


def test_trace_views_show_ct_along_the_sheet_qa_and_patch_status(scroll_copy, tmp_path):
    vp = scroll_copy
    ps = [put(vp, f"auto_grown_2025010100000000{i}", 2.5 + i, 4.0 + i, 15, 65) for i in range(4)]
    update_meta(ps[0], lambda m: m.setdefault("tags", {}).update(approved=None))
    update_meta(ps[1], lambda m: m.setdefault("tags", {}).update(defective=None))
    rows, cols = tifffile.imread(ps[2] / "x.tif").shape
    keep = np.full((rows, cols), 255, np.uint8)
    keep[:3] = 0
    write_mask(ps[2], keep)
    tr = _make_trace(vp, [p.name for p in ps])
    lay = preview_trace(tr, tmp_path / "t.png")
    assert lay["source"] == "sampled synth_ct.zarr"
    assert lay["patch_status"] == {ps[0].name: "approved", ps[1].name: "defective", ps[2].name: "masked",
                                   ps[3].name: "plain"}
    x0, y0, w, h = lay["image_box"]
    img = np.asarray(Image.open(tmp_path / "t.png").convert("L"))[y0:y0 + h, x0:x0 + w]
    assert img.mean() > 150  # the CT is bright on the sheet (≈210) and dark off it (≈30)
    assert main(["preview", "trace", str(tr), "--qa", "--out", str(tmp_path / "q.png")]) == 0
    ql = read_layout(tmp_path / "q.png")
    qimg = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
    x0, y0, w, h = ql["image_box"]
    k = w // 12
    red = qimg[y0 + 5 * k, x0 + 6 * k]
    green = qimg[y0 + 8 * k, x0 + 1 * k]
    assert red[0] > 200 and red[1] < 60 and green[1] > 180 and green[0] < 60
    assert qimg[y0 + k // 2, x0 + k // 2].sum() == 0  # no corner → black
    # a rendered centre layer wins over sampling
    (tr / "layers").mkdir()
    for i, v in enumerate((10, 123, 240)):
        tifffile.imwrite(tr / "layers" / f"{i:02d}.tif", np.full((40, 50), v, np.uint8))
    lay = preview_trace(tr, tmp_path / "l.png")
    img = np.asarray(Image.open(tmp_path / "l.png").convert("L"))
    x0, y0, w, h = lay["image_box"]
    assert lay["source"] == "layers/01.tif" and (img[y0:y0 + h, x0:x0 + w] == 123).all()


def test_density_target_follows_the_daemons_config(scroll_copy, tmp_path, monkeypatch, capsys):
    """The density preview counts "below target" with the tgt_overlap_count the daemon uses: from
    --config / $VCD_CONFIG when the daemon runs with one, and the daemon's own previews pass theirs."""
    vp = scroll_copy
    a = [put(vp, f"auto_grown_2025010100000000{i}", 8.0 + 0.1 * i, 9.5 + 0.1 * i, 10, 80).name for i in range(3)]
    link(vp / "paths", a[0], a[1:])
    link(vp / "paths", a[1], a[2:])  # 2 links each
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[params.expand]\ntgt_overlap_count = 3\n")
    out = tmp_path / "d.png"
    assert main(["preview", "density", str(vp), "--config", str(cfg), "--out", str(out)]) == 0
    assert read_layout(out)["stats"]["tgt_overlap_count"] == 3 and "3 (100.0%) below target" in capsys.readouterr().out
    monkeypatch.setenv("VCD_CONFIG", str(cfg))
    assert main(["preview", "density", str(vp), "--out", str(out)]) == 0
    assert read_layout(out)["stats"]["tgt_overlap_count"] == 3
    refresh_previews(vp, tgt=2)
    idx = json.loads((vp / ".vcd" / "previews" / "index.json").read_text())
    assert idx["density"]["tgt_overlap_count"] == 2 and idx["density"]["patches_below_target"] == 0
    # [params_files] too, through the daemon's config loader (issue 28): a renamed expand params file
    monkeypatch.delenv("VCD_CONFIG")
    (vp / "grow_more.json").write_text(json.dumps({"tgt_overlap_count": 4}))
    (vp / "vcd.toml").write_text('[params_files]\nexpand = "grow_more.json"\n')
    assert main(["preview", "density", str(vp), "--out", str(out)]) == 0
    assert read_layout(out)["stats"]["tgt_overlap_count"] == 4
    assert main(["preview", "refresh", str(vp)]) == 0
    idx = json.loads((vp / ".vcd" / "previews" / "index.json").read_text())
    assert idx["density"]["tgt_overlap_count"] == 4


def test_refresh_previews_writes_the_documented_folder(scroll_copy):
    vp = scroll_copy
    ps = [put(vp, f"auto_grown_2025010100000000{i}", 2.5 + i, 4.0 + i, 15, 65).name for i in range(2)]
    tr = _make_trace(vp, ps)
    out = refresh_previews(vp)
    folder = vp / ".vcd" / "previews"
    names = {p.name for p in out}
    assert {"slice_z25.png", "slice_z50.png", "slice_z75.png", "slice_y50.png", "density.png",
            f"trace_{tr.name}.png", f"trace_{tr.name}_qa.png"} <= names
    assert all(p.parent == folder and p.stat().st_size > 0 for p in out)
    idx = json.loads((folder / "index.json").read_text())
    assert idx["density"]["patches"] == 2 and set(idx["files"]) == names
    (folder / "trace_auto_trace_gone.png").write_bytes(b"x")  # a trace no longer among the newest
    refresh_previews(vp)
    assert not (folder / "trace_auto_trace_gone.png").exists()


def test_bad_inputs_name_the_fix(scroll_copy, tmp_path, capsys):
    assert main(["preview", "slice", str(scroll_copy), "--index", "999"]) == 1
    assert "--index" in capsys.readouterr().err
    with pytest.raises(InputError):
        preview_trace(tmp_path, tmp_path / "x.png")
