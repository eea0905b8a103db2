"""Final sheets: which gated traces make the result, and making them tile without touching themselves.

:func:`final_sheets` reads what is on disk — the gate records (:mod:`vcd.post.qa_gate`) of the traces
in ``traces/`` — and returns the accepted traces not superseded by a retrace, minus duplicates, with
the pairs to fuse and the finished fusions (:func:`sheet_relations`). :func:`finish_sheets` then cuts
each sheet's self-contacts and normal flips (:func:`clean_sheet`) and lets sheets in priority order
give up what an earlier one covers (:func:`tile`), in their ``mask.tif`` (255 = kept): the traced area
is the union of the final sheets.

Points are ``(x, y, z)`` level-0 voxels; grids ``[rows, cols, 3]`` with ``-1`` for invalid vertices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import VcdError
from ..formats.jsonio import atomic_write_json, read_json
from ..formats.provenance import read_provenance
from ..formats.tifxyz import read_surface, update_meta, write_mask
from ..formats.volpkg import finished_traces
from ..kernels.points import densify_grid, valid_quads
from ..formats.gaterecord import fuse_inputs, read_gate
from .qa_gate import keep_piece


def covered_share(points: np.ndarray, tree: cKDTree | None, tol: float) -> float:
    """Share of ``points`` (N×3, voxels) within ``tol`` voxels of a point of ``tree`` (0 without a tree)."""
    if tree is None or not len(points):
        return 0.0
    d, _ = tree.query(points, distance_upper_bound=tol + 1e-6)
    return float(np.mean(np.isfinite(d)))


def sheet_relations(clouds: dict[str, np.ndarray], order: list[str], tol: float, dup_share: float = 0.8,
                    fuse_share: float = 0.05, shared_patches: dict | None = None) -> dict:
    """Duplicates and fusion pairs among accepted traces (``clouds``: name → densified points).

    Walking ``order`` (largest first), a trace with more than ``dup_share`` of its points within
    ``tol`` of one kept trace is a *duplicate* of it (dropped); one that overlaps a kept trace by at
    least ``fuse_share`` is *fused* into it — but only when the two are the same sheet: they share
    supporting patches (``shared_patches``: name → set of patch names from the provenance; patches
    never span two wraps) — never two wraps into one. Returns ``{"kept": [...], "duplicates": {name:
    of}, "fuse": {kept name: [other names]}}``."""
    kept: list[str] = []
    trees: dict[str, cKDTree] = {}
    dups: dict[str, str] = {}
    fuse: dict[str, list[str]] = {}
    for name in order:
        pts = clouds[name]
        best, best_share = None, 0.0
        for k in kept:
            s = covered_share(pts, trees[k], tol)
            if s > best_share:
                best, best_share = k, s
        if best is not None and best_share > dup_share:
            dups[name] = best
            continue
        kept.append(name)
        trees[name] = cKDTree(pts) if len(pts) else None
        if best is not None and best_share >= fuse_share:
            same = shared_patches is None or bool(shared_patches.get(name, set()) & shared_patches.get(best, set()))
            if same:
                fuse.setdefault(best, []).append(name)
    return {"kept": kept, "duplicates": dups, "fuse": fuse}


def _contact_pairs(points: np.ndarray, valid: np.ndarray, dist: float, min_cells: int) -> np.ndarray:
    """Grid positions ``[K, 2, 2]`` (pair, end, (row, col)) of vertex pairs within ``dist`` voxels of each
    other and more than ``min_cells`` cells apart on the grid (Chebyshev)."""
    rc = np.argwhere(valid)
    if len(rc) < 2:
        return np.empty((0, 2, 2), int)
    pairs = cKDTree(points[valid].astype(np.float64)).query_pairs(dist, output_type="ndarray")
    if not len(pairs):
        return np.empty((0, 2, 2), int)
    far = np.abs(rc[pairs[:, 0]] - rc[pairs[:, 1]]).max(axis=1) > min_cells
    return np.stack([rc[pairs[far, 0]], rc[pairs[far, 1]]], axis=1)


def self_contacts(points: np.ndarray, valid: np.ndarray, dist: float = 1.5, min_cells: int = 3,
                  outer_only: bool = False) -> np.ndarray:
    """bool ``[rows, cols]``: vertices of a surface grid (``points[row, col] = (x, y, z)`` voxels) that
    come within ``dist`` voxels of another vertex of the same grid more than ``min_cells`` cells away
    (Chebyshev distance on the grid) — the sheet touching or crossing itself. ``outer_only``: of each
    such pair only the vertex farther (on the grid) from the valid area's centre, the side to cut."""
    out = np.zeros(valid.shape, bool)
    pr = _contact_pairs(points, valid, dist, min_cells)
    if not len(pr):
        return out
    if outer_only:
        centre = np.argwhere(valid).mean(axis=0)
        d = np.linalg.norm(pr - centre, axis=2)
        pr = pr[np.arange(len(pr)), np.argmax(d, axis=1)][:, None, :]
    hit = pr.reshape(-1, 2)
    out[hit[:, 0], hit[:, 1]] = True
    return out


def normal_flips(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bool ``[rows, cols]``: vertices of quads whose normal points against a 4-neighbour quad's
    (negative dot product) — a fold of the grid onto itself."""
    p = points.astype(np.float64)
    q = valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:] & valid[1:, 1:]
    n = np.cross(p[1:, 1:] - p[:-1, :-1], p[:-1, 1:] - p[1:, :-1])
    bad = np.zeros(q.shape, bool)
    for a, b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                 ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        flip = (np.einsum("ijk,ijk->ij", n[a], n[b]) < 0) & q[a] & q[b]
        bad[a] |= flip
        bad[b] |= flip
    out = np.zeros(valid.shape, bool)
    for dr in (0, 1):
        for dc in (0, 1):
            out[dr:dr + bad.shape[0], dc:dc + bad.shape[1]] |= bad
    return out


def clean_sheet(points: np.ndarray, valid: np.ndarray, dilate: int = 1) -> tuple[np.ndarray, dict]:
    """The kept vertices of a final sheet with the outer side of its self-contacts and its normal
    flips cut (grown by ``dilate`` cells) and only the largest 4-connected piece kept (a sheet is one
    piece: stray fragments a gate's cuts leave are dropped): ``(keep [rows, cols], counts)`` (both
    sides of the contacts, flipped vertices, pieces dropped)."""
    contact, flip = self_contacts(points, valid), normal_flips(points, valid)
    counts = {"self_contact_px": int(contact.sum()), "normal_flip_px": int(flip.sum())}
    bad = self_contacts(points, valid, outer_only=True) | flip
    if bad.any() and dilate:
        bad = ndimage.binary_dilation(bad, iterations=dilate)
    keep, dropped = keep_piece(valid & ~bad)
    counts["pieces_dropped"] = int(dropped)
    return keep, counts


def tile(vertices: list[np.ndarray], dense: list[np.ndarray], tol: float) -> list[np.ndarray]:
    """Which vertices of each sheet an earlier sheet already covers. ``vertices[i]`` (N_i×3) are sheet
    i's kept vertices, ``dense[i]`` (M_i×3) its kept area sampled at least every ``tol`` voxels
    (:func:`densify_grid`); sheets come highest priority first. Returns bool masks, True where a
    vertex lies within ``tol`` voxels of an earlier sheet's area (the first sheet keeps all of its own)."""
    out, trees = [], []
    for v, d in zip(vertices, dense):
        hit = np.zeros(len(v), bool)
        for t in trees:
            if len(v):
                hit |= t.query(v, distance_upper_bound=tol)[0] <= tol
        out.append(hit)
        if len(d):
            trees.append(cKDTree(d))
    return out



#: an accepted trace with more than this share of its points on a larger kept one adds nothing: dropped
DUP_SHARE = 0.95


def sheets_tree(traces: list[Path], tol: float):
    """A KD-tree of the (masked, densified) points of ``traces`` (None without points)."""
    from scipy.spatial import cKDTree
    clouds = []
    for t in traces:
        try:
            clouds.append(densify_grid(read_surface(t).points, tol))
        except VcdError:
            continue
    clouds = [c for c in clouds if len(c)]
    return cKDTree(np.concatenate(clouds)) if clouds else None


def gate_records(volpkg: Path) -> dict[str, dict]:
    """name → gate record of every gated trace."""
    out = {}
    for d in finished_traces(Path(volpkg)):
        rec = read_gate(d)
        if rec is not None:
            out[d.name] = rec
    return out


def final_sheets(volpkg: Path, tol: float = 2.0) -> dict:
    """The final sheets from what is on disk: accepted traces not superseded by a retrace, minus
    duplicates, with fusion pairs and finished fusions. Returns ``{"accepted": [dirs], "kept": [names],
    "duplicates": {name: of}, "fuse": {ref: [others]}, "fused": {ref: fuse dir}, "sheets": [dirs],
    "tiled": bool}`` — ``tiled``: the choice :func:`finish_sheets` made and tiled from these same inputs
    (:data:`FINAL_FILE`), returned as recorded."""
    volpkg = Path(volpkg)
    recs = gate_records(volpkg)
    superseded = {r.get("retrace_of") for r in recs.values() if r.get("retrace_of")}
    accepted = [volpkg / "traces" / n for n, r in sorted(recs.items())
                if r.get("status") == "accepted" and n not in superseded]
    chosen = _recorded_choice(volpkg, accepted)
    if chosen is not None:
        return chosen
    clouds, patches = {}, {}
    for d in accepted:
        clouds[d.name] = densify_grid(read_surface(d).points, tol)
        patches[d.name] = set(((read_provenance(d) or {}).get("patches") or {}).keys())
    order = sorted(clouds, key=lambda n: (-len(clouds[n]), n))
    rel = sheet_relations(clouds, order, tol, DUP_SHARE, shared_patches=patches)
    fused = {}
    root = volpkg / "traces"
    if root.is_dir():
        for d in sorted(root.glob("fuse_fill_*")):
            ins = fuse_inputs(d)
            rec = read_gate(d) or {}
            if rec.get("status") == "accepted" and ins and ins[0] in rel["fuse"] and set(ins[1:]) == set(rel["fuse"][ins[0]]):
                fused[ins[0]] = d
    sheets = [fused.get(n, volpkg / "traces" / n) for n in rel["kept"]]
    return {"accepted": accepted, "kept": rel["kept"], "duplicates": rel["duplicates"], "fuse": rel["fuse"],
            "fused": {k: v.name for k, v in fused.items()}, "sheets": sheets, "tiled": False}


#: ``traces/<FINAL_FILE>``: the choice :func:`finish_sheets` tiled (the accepted traces and fusions it
#: saw, and :func:`final_sheets`' answer then). Tiling masks the sheets, which changes what a fresh
#: :func:`final_sheets` would compute from them; while the inputs are the same, the recorded choice stands.
FINAL_FILE = "autoseg_final.json"


def _choice_inputs(volpkg: Path, accepted: list[Path]) -> list[str]:
    """Names of the accepted traces and accepted fused sheets a choice was made from."""
    root = Path(volpkg) / "traces"
    fused = [d.name for d in sorted(root.glob("fuse_fill_*")) if (read_gate(d) or {}).get("status") == "accepted"]
    return sorted(a.name for a in accepted) + fused


def _recorded_choice(volpkg: Path, accepted: list[Path]) -> dict | None:
    """:func:`final_sheets`' answer recorded by :func:`finish_sheets`, if made from the same inputs."""
    path = Path(volpkg) / "traces" / FINAL_FILE
    try:
        rec = read_json(path, "final-sheet choice") if path.exists() else None
    except VcdError:
        return None
    if not isinstance(rec, dict) or rec.get("inputs") != _choice_inputs(volpkg, accepted):
        return None
    root = Path(volpkg) / "traces"
    return {"accepted": accepted, "kept": rec["kept"], "duplicates": rec["duplicates"], "fuse": rec["fuse"],
            "fused": rec["fused"], "sheets": [root / n for n in rec["sheets"]], "tiled": True}


def finish_sheets(volpkg: Path, tol: float) -> dict:
    """Make the final sheets tile and never touch themselves, in their ``mask.tif`` (255 = kept):

    1. each sheet's self-contacts (a vertex within 1.5 voxels of one more than 3 cells away) and normal
       flips are cut with a cell around them, and its largest piece kept (:func:`clean_sheet`);
    2. sheets in priority order (:func:`final_sheets`: largest first, a fused sheet in its reference's
       place) give up what an earlier one covers within ``tol`` voxels (autoseg passes
       :func:`vcd.daemon.config.cover_tol`; :func:`tile`), so the traced area is their union.

    Writes a mask only where something changes, records ``vcd_autoseg_final`` in each sheet's
    ``meta.json`` and the choice in :data:`FINAL_FILE` (a sheet left without a quad, so without
    area, is no longer a final sheet); returns ``{sheet name: counts}``."""
    volpkg = Path(volpkg)
    choice = final_sheets(volpkg)
    sheets = choice["sheets"]
    surfs, keeps, recs = [], [], {}
    for d in sheets:
        try:
            s = read_surface(d)
        except VcdError:
            continue
        keep, counts = clean_sheet(s.points, s.valid)
        surfs.append((d, s))
        keeps.append(keep)
        recs[d.name] = counts
    verts = [s.points[k].astype(np.float64) for (_, s), k in zip(surfs, keeps)]
    dense = [densify_grid(np.where(k[..., None], s.points, -1.0).astype(np.float32), tol)
             for (_, s), k in zip(surfs, keeps)]
    covered = tile(verts, dense, tol)
    for (d, s), keep, hit in zip(surfs, keeps, covered):
        final = keep.copy()
        final[keep] = ~hit
        final, dropped = keep_piece(final)  # tiling may split a sheet: it stays one piece
        rec = {**recs[d.name], "tiled_px": int(hit.sum()), "kept_px": int(final.sum()),
               "kept_quads": int(valid_quads(final).sum()),
               "pieces_dropped": recs[d.name].get("pieces_dropped", 0) + int(dropped),
               "dropped_px": int(s.valid.sum() - final.sum())}
        recs[d.name] = rec
        if rec["dropped_px"]:
            write_mask(d, np.where(final, 255, 0).astype(np.uint8))
        update_meta(d, lambda m, rec=rec: {**m, "vcd_autoseg_final": rec})
    atomic_write_json(volpkg / "traces" / FINAL_FILE,
                      {"inputs": _choice_inputs(volpkg, choice["accepted"]), "kept": choice["kept"],
                       "duplicates": choice["duplicates"], "fuse": choice["fuse"], "fused": choice["fused"],
                       "sheets": [d.name for d in sheets if recs.get(d.name, {}).get("kept_quads", 1) > 0]})
    return recs

