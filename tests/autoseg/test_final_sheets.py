"""Final sheets tile and never cross themselves (issue 26 item 3): the pure checks on surface grids
with known geometry, and :func:`vcd.post.final_sheets.finish_sheets`'s masks on real tifxyz files."""

from __future__ import annotations

import numpy as np

from vcd.kernels.points import densify_grid
from vcd.post.final_sheets import clean_sheet, normal_flips, self_contacts, tile


def plane(rows, cols, step=4.0, x0=10.0, z=50.0, y0=10.0):
    """A flat grid in the plane ``z`` (``points[r, c] = (x0 + c·step, y0 + r·step, z)``)."""
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return np.stack([x0 + c * step, y0 + r * step, np.full_like(r, z)], axis=-1)


def folded(rows=10, cols=40, step=4.0, gap=1.0):
    """A grid that runs 20 columns along +x, turns and runs back above itself ``gap`` voxels higher in
    z: the second half comes within ``gap`` of the first, ~20 columns away on the grid."""
    p = plane(rows, cols, step)
    half = cols // 2
    back = np.arange(cols - half)
    p[:, half:, 0] = (10.0 + (half - 2 - back) * step)[None, :]  # no vertical quad: the turn is a flip
    p[:, half:, 2] = 50.0 + gap
    return p


def test_a_flat_sheet_has_no_self_contact_or_flip():
    p = plane(12, 12)
    v = np.ones(p.shape[:2], bool)
    assert not self_contacts(p, v).any() and not normal_flips(p, v).any()
    keep, counts = clean_sheet(p, v)
    assert keep.all() and counts == {"self_contact_px": 0, "normal_flip_px": 0, "pieces_dropped": 0}


def test_a_sheet_folded_onto_itself_is_found_and_cut_to_one_side():
    p = folded(gap=1.0)
    v = np.ones(p.shape[:2], bool)
    contact = self_contacts(p, v)
    assert contact[:, :15].any() and contact[:, 25:].any()        # both layers of the contact
    assert normal_flips(p, v)[:, 18:22].any()                      # the turn flips the normals
    keep, counts = clean_sheet(p, v)
    assert counts["self_contact_px"] > 0 and counts["normal_flip_px"] > 0
    kept = p[keep]
    assert not self_contacts(np.where(keep[..., None], p, -1), keep).any()
    assert len(kept) >= 0.3 * v.sum()                              # one side of the fold is kept
    far = folded(gap=3.0)                                          # 3 voxels apart: not a contact
    assert not self_contacts(far, v).any()


def test_overlapping_sheets_tile_their_union():
    a = plane(20, 20, step=4.0, x0=0.0)                # x 0..76
    b = plane(20, 20, step=4.0, x0=40.0, z=50.5)       # x 40..116: overlaps a on x 40..76, 0.5 vx above
    c = plane(20, 20, step=4.0, x0=0.0, z=64.0)        # the next wrap, 14 voxels away: untouched
    va = np.ones(a.shape[:2], bool)
    grids = [a, b, c]
    covered = tile([g[va].astype(np.float64) for g in grids], [densify_grid(g, 2.0) for g in grids], 2.0)
    assert not covered[0].any() and not covered[2].any()
    hit_b = covered[1].reshape(va.shape)
    xs = b[..., 0]
    assert hit_b[xs <= 76].all() and not hit_b[xs >= 82].any()


def _accepted_trace(volpkg, name, points):
    """A gated, accepted trace in ``traces/`` as autoseg leaves one (tifxyz + ``autoseg_qa.json``)."""
    from vcd.formats.jsonio import atomic_write_json
    from vcd.formats.tifxyz import write_surface
    d = write_surface(volpkg / "traces" / name, points, {"source": "vcd_trace"}, scale=[0.25, 0.25])
    atomic_write_json(d / "autoseg_qa.json", {"status": "accepted", "kept_px": int(points.shape[0] * points.shape[1])})
    return d


def test_finish_sheets_masks_overlap_and_folds_in_real_files(tmp_path):
    from vcd.post.final_sheets import final_sheets, finish_sheets
    from vcd.formats.tifxyz import read_surface
    from vcd.formats.volpkg import create_volpkg
    vp = create_volpkg(tmp_path / "s.volpkg").path
    (vp / "traces").mkdir()
    big = plane(20, 30, x0=0.0)                          # x 0..116, the larger: keeps all
    small = plane(20, 20, x0=60.0, z=50.5)               # x 60..136: x 60..116 lies on the big one
    fold = folded(rows=10, cols=40, gap=1.0)
    fold[..., 2] += 30.0                                 # elsewhere: touches only itself
    _accepted_trace(vp, "auto_trace_big", big)
    _accepted_trace(vp, "auto_trace_small", small)
    _accepted_trace(vp, "auto_trace_fold", fold)
    assert len(final_sheets(vp)["sheets"]) == 3
    recs = finish_sheets(vp, tol=2.0)
    assert recs["auto_trace_big"]["dropped_px"] == 0
    s = read_surface(vp / "traces" / "auto_trace_small")
    assert not s.valid[small[..., 0] <= 116].any() and s.valid[small[..., 0] >= 124].all()
    f = read_surface(vp / "traces" / "auto_trace_fold")
    assert recs["auto_trace_fold"]["self_contact_px"] > 0 and f.valid.sum() < fold.shape[0] * fold.shape[1]
    assert not self_contacts(f.points, f.valid).any() and not normal_flips(f.points, f.valid).any()
    again = finish_sheets(vp, tol=2.0)                   # idempotent: nothing more to cut
    assert all(r["dropped_px"] == 0 for r in again.values())
