"""The QA gate of a trace: cut its hot spots, keep the piece that holds its seed patch.

A trace's QA map ``qa.tif`` holds one suspicion value per trace *corner* (``[rows, cols]``, ``-1`` =
no corner); the written trace grid has ``step`` pixels per corner (pixel ``(i, j)`` lies at corner
``(i / step, j / step)``). The gate marks corners with suspicion >= ``threshold`` hot, grows them by
``dilate`` corners, removes them from the valid pixels and keeps the connected piece holding the
anchor (the trace pixels within ``tol`` voxels of its seed patch), else the largest piece. What is
kept is written as the trace's ``mask.tif`` (VC3D's mask: 255 = kept — the prize's accepted-area
mask); the record (what was cut and why, by QA component: :data:`REASONS`) goes to
``autoseg_qa.json`` (:data:`GATE_FILE`) and the ``vcd_autoseg`` key of its ``meta.json``.

A fused sheet (``fuse_fill_*``) is gated by :func:`gate_fused`: filled cells that are only inpainted
or that cross to another wrap are cut.

Points are ``(x, y, z)`` level-0 voxels; grids ``[rows, cols, 3]`` with ``-1`` for invalid vertices.
Runs in the ``gate`` job (:mod:`vcd.jobs.gate`), never on the daemon's scheduler thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import VcdError
from ..formats.gaterecord import GATE_FILE, fuse_inputs
from ..formats.jsonio import atomic_write_json
from ..formats.provenance import read_provenance
from ..formats.tifxyz import read_surface, update_meta, write_mask
from ..kernels.points import densify_grid, valid_mask


#: the QA components (see :mod:`vcd.trace.qa`) a hot corner is blamed on, in report order
REASONS = ("patches_disagree", "rival_surface", "off_consensus_surface", "normal_flip", "low_support")


@dataclass
class GateResult:
    """What the QA gate decided for one trace. ``keep``: bool [rows, cols] of the *written* grid
    (False = cut; VC3D's mask.tif is 255 where kept); ``hot``: corners with suspicion >= threshold;
    ``reasons``: hot corners per :data:`REASONS` entry; ``cut_px``/``kept_px``: written valid pixels
    cut and kept; ``pieces_dropped``: separate pieces cut away because they were not the kept one."""

    keep: np.ndarray
    hot: int
    corners: int
    reasons: dict = field(default_factory=dict)
    cut_px: int = 0
    kept_px: int = 0
    pieces_dropped: int = 0
    hot_cut_px: int = 0

    @property
    def flagged_share(self) -> float:
        """Hot corners over all corners (before cutting)."""
        return self.hot / self.corners if self.corners else 0.0


def blame(qmap: np.ndarray, comps: dict, s0: float, threshold: float) -> dict:
    """Hot corners (``qmap >= threshold``) per reason: the QA component that reaches the corner's
    suspicion (``comps``: ``disagree``, ``rival``, ``offsurf``, ``support`` arrays of the corner grid;
    what none of them explains is a normal flip)."""
    hot = qmap >= threshold
    out = {k: 0 for k in REASONS}
    if not hot.any():
        return out
    low = 0.45 * (1.0 - np.minimum(1.0, np.asarray(comps.get("support", np.zeros_like(qmap))) / max(s0, 1e-6)))
    named = [("patches_disagree", comps.get("disagree")), ("rival_surface", comps.get("rival")),
             ("off_consensus_surface", comps.get("offsurf")), ("low_support", low)]
    q = qmap[hot]
    left = np.ones(len(q), bool)
    for name, arr in named:
        if arr is None:
            continue
        a = np.asarray(arr, np.float64)
        if a.shape != qmap.shape:
            continue
        mine = left & (a[hot] >= q - 1e-6)
        out[name] += int(mine.sum())
        left &= ~mine
    out["normal_flip"] += int(left.sum())
    return out


def corner_to_pixels(corner_mask: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """A bool corner-grid map on the written grid of ``shape``: pixel ``(i, j)`` takes the value of
    its nearest corner ``(round(i / step), round(j / step))``."""
    rows = np.clip(np.rint(np.arange(shape[0]) / step).astype(int), 0, corner_mask.shape[0] - 1)
    cols = np.clip(np.rint(np.arange(shape[1]) / step).astype(int), 0, corner_mask.shape[1] - 1)
    return corner_mask[rows][:, cols]


def keep_piece(valid: np.ndarray, anchor: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The one 4-connected piece of ``valid`` to keep — the one holding most ``anchor`` pixels (the
    seed patch's footprint), else the largest — and how many other pieces were dropped."""
    lab, n = ndimage.label(valid)
    if n <= 1:
        return valid.copy(), 0
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    counts[0] = 0
    score = counts.astype(np.float64)
    if anchor is not None and (anchor & valid).any():
        score = np.bincount(lab[anchor & valid], minlength=n + 1).astype(np.float64) * 1e9 + counts
        score[0] = -1
    best = int(np.argmax(score))
    return lab == best, n - 1


def qa_gate(qmap: np.ndarray, valid_px: np.ndarray, step: int, threshold: float = 0.5, dilate: int = 2,
            comps: dict | None = None, s0: float = 20.0, anchor: np.ndarray | None = None) -> GateResult:
    """Cut the hot spots of one trace: corners with suspicion >= ``threshold``, grown by ``dilate``
    corners (the QA map marks a jump within about two cells, ``tests/trace/test_trace.py``), are cut
    from the written grid (``valid_px``: bool [rows, cols] of its valid pixels, ``step`` pixels per
    corner), then only one 4-connected piece is kept (:func:`keep_piece`): a cut that separates two
    pieces has most likely separated two wraps."""
    hot = qmap >= threshold
    cut_c = ndimage.binary_dilation(hot, np.ones((3, 3), bool), iterations=dilate) if hot.any() and dilate \
        else hot
    cut_px = corner_to_pixels(cut_c, max(1, int(step)), valid_px.shape) & valid_px
    left = valid_px & ~cut_px
    keep, dropped = keep_piece(left, anchor)
    return GateResult(keep=keep, hot=int(hot.sum()), corners=int((qmap >= 0).sum()),
                      reasons=blame(qmap, comps or {}, s0, threshold), cut_px=int((valid_px & ~keep).sum()),
                      kept_px=int(keep.sum()), pieces_dropped=dropped, hot_cut_px=int(cut_px.sum()))


def offending_patches(ids: np.ndarray, names: list[str], hot: np.ndarray, min_share: float = 0.3) -> list[str]:
    """Patches supporting at least ``min_share`` of the hot corners (``ids``: int [rows, cols, K]
    patch indices per corner, -1 = none), most frequent first: the candidates a person would mask."""
    if not hot.any():
        return []
    sup = ids[hot]
    flat = sup[sup >= 0]
    if not len(flat):
        return []
    counts = np.bincount(flat, minlength=len(names))
    n_hot = int(hot.sum())
    order = np.argsort(-counts)
    return [str(names[i]) for i in order if counts[i] >= max(1, min_share * n_hot)]


def fused_keep(points: np.ndarray, ref_valid: np.ndarray, on_other: np.ndarray, long_factor: float = 1.5):
    """The part of a fused sheet to keep (bool [rows, cols]) and the filled cells cut.

    ``points``: the fused grid; ``ref_valid``: where its reference trace (masked) was valid — the
    rest of the valid cells were filled by fusion; ``on_other``: bool, filled cells lying on another
    input trace (snapped onto traced data). A filled cell is cut when it is only inpainted (not on
    another trace) or when an edge to a valid neighbour is longer than ``long_factor`` × the median
    edge (a fill that crosses to the next wrap); then one piece is kept (the reference's)."""
    v = valid_mask(points)
    filled = v & ~ref_valid
    p = np.asarray(points, np.float64)
    h = v[:, :-1] & v[:, 1:]
    w = v[:-1, :] & v[1:, :]
    lh = np.linalg.norm(p[:, 1:] - p[:, :-1], axis=-1)
    lw = np.linalg.norm(p[1:] - p[:-1], axis=-1)
    med = float(np.median(np.concatenate([lh[h], lw[w]]))) if (h.any() or w.any()) else 1.0
    longh, longw = h & (lh > long_factor * med), w & (lw > long_factor * med)
    touch = np.zeros(v.shape, bool)
    touch[:, :-1] |= longh
    touch[:, 1:] |= longh
    touch[:-1, :] |= longw
    touch[1:, :] |= longw
    cut = filled & (~on_other | touch)
    keep, _ = keep_piece(v & ~cut, ref_valid & v)
    return keep, int(cut.sum()), int(filled.sum())


def _anchor(trace_pts: np.ndarray, valid: np.ndarray, seed_dir: Path, tol: float) -> np.ndarray | None:
    """Written pixels of the trace within ``tol`` voxels of its seed patch (None if unreadable)."""
    from scipy.spatial import cKDTree
    try:
        s = read_surface(seed_dir)
    except VcdError:
        return None
    cloud = densify_grid(s.points, tol)
    if not len(cloud):
        return None
    d, _ = cKDTree(cloud).query(trace_pts[valid], distance_upper_bound=tol + 1e-6)
    out = np.zeros(valid.shape, bool)
    out[valid] = np.isfinite(d)
    return out


def gate_trace(trace: Path, paths: Path, threshold: float = 0.5, dilate: int = 2, min_kept_share: float = 0.2,
               tol: float = 2.0) -> dict:
    """Gate one trace on disk: cut its hot spots, keep the seed's piece, record the result.

    Writes ``mask.tif`` (only when something is cut), ``autoseg_qa.json`` (:data:`GATE_FILE`) and
    ``meta.json`` ``vcd_autoseg``.

    Parameters
    ----------
    trace : pathlib.Path
        The trace directory (its QA map and provenance).
    paths : pathlib.Path
        The ``paths/`` directory holding the trace's seed patch.
    threshold : float
        QA suspicion at which a trace corner is hot.
    dilate : int
        Corners cut around each hot corner.
    min_kept_share : float
        A trace keeping less than this share (0..1) of its valid pixels is rejected.
    tol : float
        Voxels: a trace pixel this close to the seed patch anchors the kept piece.

    Returns
    -------
    dict
        The record: ``status`` (``accepted``, or ``rejected`` — kept share below ``min_kept_share`` or
        no QA map), ``why``, ``cut_px``, ``kept_px``, ``hot_corners``, ``reasons``, ``gated_at``.
    """
    import tifffile
    s = read_surface(trace, apply_mask=False)
    meta = s.meta
    valid = s.valid
    params = meta.get("vc_grow_seg_from_segments_params") or {}
    step = max(1, int(round(float(params.get("step", 1)))))
    prov = read_provenance(trace) or {}
    rec = {"trace": trace.name, "threshold": threshold, "dilate_corners": dilate, "seed": prov.get("seed"),
           "retrace_of": prov.get("retrace_of"), "valid_px": int(valid.sum())}
    if not (trace / "qa.tif").exists():
        rec.update(status="rejected", why="no qa.tif", cut_px=int(valid.sum()), kept_px=0, hot_corners=0,
                   corners=0, reasons={}, pieces_dropped=0)
        return _record(trace, rec, np.zeros(valid.shape, bool))
    qmap = tifffile.imread(trace / "qa.tif").astype(np.float64)
    comps = {}
    if (trace / "vcd_supporters.npz").exists():
        with np.load(trace / "vcd_supporters.npz") as z:
            comps = {k: z[k] for k in ("support", "disagree", "rival", "offsurf") if k in z.files}
    s0 = float(params.get("inlier_base_threshold", 20))
    anchor = _anchor(s.points, valid, paths / str(prov.get("seed", "")), tol) if prov.get("seed") else None
    g = qa_gate(qmap, valid, step, threshold, dilate, comps, s0, anchor)
    share = g.kept_px / max(1, int(valid.sum()))
    status = "accepted" if share >= min_kept_share and g.kept_px >= 4 else "rejected"
    rec.update(status=status, why=("kept share %.2f" % share) + ("" if status == "accepted" else
                                                                  f" < min_kept_share {min_kept_share}"),
               hot_corners=g.hot, corners=g.corners, flagged_share=round(g.flagged_share, 5), reasons=g.reasons,
               cut_px=g.cut_px, hot_cut_px=g.hot_cut_px, kept_px=g.kept_px, pieces_dropped=g.pieces_dropped,
               kept_share=round(share, 5), residual_suspicion=_residual(qmap, g.keep, step, threshold))
    return _record(trace, rec, g.keep if status == "accepted" else np.zeros(valid.shape, bool))


def _residual(qmap: np.ndarray, keep: np.ndarray, step: int, threshold: float) -> float:
    """Share of the kept corners whose suspicion is at least 0.7 × ``threshold``: the QA's estimate of
    the sheet-switch share left in what was kept."""
    rows = np.arange(0, keep.shape[0], step)
    cols = np.arange(0, keep.shape[1], step)
    k = keep[rows][:, cols]
    h, w = min(k.shape[0], qmap.shape[0]), min(k.shape[1], qmap.shape[1])
    k, q = k[:h, :w], qmap[:h, :w]
    kept = k & (q >= 0)
    return float((kept & (q >= 0.7 * threshold)).sum() / kept.sum()) if kept.any() else 0.0


def _record(trace: Path, rec: dict, keep: np.ndarray) -> dict:
    """Write the accepted-area mask (only when something is cut) and the record."""
    rec["gated_at"] = time.time()
    if rec["cut_px"]:
        write_mask(trace, np.where(keep, 255, 0).astype(np.uint8))
    atomic_write_json(trace / GATE_FILE, rec)
    update_meta(trace, lambda m: {**m, "vcd_autoseg": {k: rec[k] for k in ("status", "why", "cut_px", "kept_px",
                                                                           "hot_corners", "reasons")}})
    return rec


def gate_fused(fused: Path, tol: float = 2.0) -> dict:
    """Gate a ``fuse_fill_*`` sheet (:func:`fused_keep`): filled cells that are only inpainted, or that
    cross to another wrap, are cut (``mask.tif``); the record is written to ``autoseg_qa.json``.

    Parameters
    ----------
    fused : pathlib.Path
        The fused sheet's directory (its ``vcd_inputs`` name the traces, the reference first).
    tol : float
        Voxels: a filled cell this close to another input trace lies on traced data (it may be kept).

    Returns
    -------
    dict
        The record, as :func:`gate_trace`'s (``status``, ``why``, ``cut_px``, ``kept_px``, …, and
        ``fused_from``).
    """
    from scipy.spatial import cKDTree
    s = read_surface(fused, apply_mask=False)
    names = fuse_inputs(fused)
    root = fused.parent
    ref = read_surface(root / names[0]) if names and (root / names[0]).is_dir() else None
    rec = {"trace": fused.name, "fused_from": names, "valid_px": int(s.valid.sum())}
    if ref is None or ref.points.shape != s.points.shape:
        rec.update(status="rejected", why="reference trace missing or of another grid", cut_px=int(s.valid.sum()),
                   kept_px=0, hot_corners=0, reasons={})
        return _record(fused, rec, np.zeros(s.valid.shape, bool))
    others = [densify_grid(read_surface(root / n).points, tol) for n in names[1:] if (root / n).is_dir()]
    others = [o for o in others if len(o)]
    on_other = np.zeros(s.valid.shape, bool)
    if others:
        d, _ = cKDTree(np.concatenate(others)).query(s.points[s.valid], distance_upper_bound=tol + 1e-6)
        on_other[s.valid] = np.isfinite(d)
    keep, cut_fill, filled = fused_keep(s.points, ref.valid, on_other)
    rec.update(status="accepted", why=f"{filled - cut_fill} of {filled} filled cells kept (on traced data, no long "
                                      "edge)", cut_px=int((s.valid & ~keep).sum()), kept_px=int(keep.sum()),
               filled_px=filled, filled_cut_px=cut_fill, hot_corners=0, reasons={})
    return _record(fused, rec, keep)

