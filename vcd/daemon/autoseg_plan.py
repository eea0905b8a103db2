"""Autosegmentation decisions as pure functions (arrays and plain data in, decisions out).

Used by :class:`vcd.daemon.autoseg.Autoseg`, which gathers their inputs from ``paths/``, ``traces/``
and the queue and acts on what they return; tested in-process in ``tests/autoseg/test_plan.py``.

Conventions: points are ``(x, y, z)`` level-0 voxels; a surface grid is ``[rows, cols, 3]`` with
``-1`` for invalid vertices; a trace's QA map is ``[rows, cols]`` over its *corner* grid (one value
per trace cell, ``-1`` = no corner), and the written trace grid has ``step`` pixels per corner
(written pixel ``(i, j)`` lies at corner ``(i / step, j / step)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..kernels.points import valid_mask


# ---------------------------------------------------------------------------- the collection's geometry

@dataclass
class PatchGeom:
    """One patch as the planner sees it. ``center``: mean valid point (x, y, z) voxels; ``radius``:
    median xy distance of its points from the collection's axis (voxels); ``links``: entries in its
    ``overlapping.json``; ``covered``: share (0..1) of its points near an accepted trace."""

    name: str
    center: tuple[float, float, float]
    radius: float
    z_range: tuple[float, float]
    links: int
    area_cm2: float = 0.0
    approved: bool = False
    defective: bool = False
    covered: float = 0.0


def collection_axis(clouds: list[np.ndarray]) -> tuple[float, float]:
    """The scroll's axis as the xy centroid of every patch point (N×3 clouds): from the collection's
    own geometry, no spiral model."""
    pts = [c[:, :2] for c in clouds if len(c)]
    if not pts:
        return (0.0, 0.0)
    allp = np.concatenate(pts)
    return float(allp[:, 0].mean()), float(allp[:, 1].mean())


def covered_share(points: np.ndarray, tree: cKDTree | None, tol: float) -> float:
    """Share of ``points`` (N×3) within ``tol`` voxels of the accepted traces' points (``tree``)."""
    if tree is None or not len(points):
        return 0.0
    d, _ = tree.query(points, distance_upper_bound=tol + 1e-6)
    return float(np.mean(np.isfinite(d)))


def densify_grid(points: np.ndarray, spacing: float) -> np.ndarray:
    """Valid vertices of a grid plus bilinear points inside its valid quads, about ``spacing``
    voxels apart (N×3), for "is this near the trace" queries."""
    p = np.asarray(points, np.float64)
    v = valid_mask(p)
    out = [p[v]]
    q = v[:-1, :-1] & v[1:, :-1] & v[:-1, 1:] & v[1:, 1:]
    if q.any():
        h = v[:, :-1] & v[:, 1:]
        step = float(np.median(np.linalg.norm(p[:, 1:][h] - p[:, :-1][h], axis=1))) if h.any() else spacing
        f = max(1, int(math.ceil(step / max(spacing, 1e-6))))
        if f > 1:
            a, b, c, d = p[:-1, :-1][q], p[:-1, 1:][q], p[1:, :-1][q], p[1:, 1:][q]
            t = np.arange(f + 1) / f
            for u in t:
                for w in t:
                    if (u, w) != (0.0, 0.0):
                        out.append((1 - u) * (1 - w) * a + (1 - u) * w * b + u * (1 - w) * c + u * w * d)
    return np.concatenate(out)


# ---------------------------------------------------------------------------- when to trace

def growth_finished(schedule, stats: dict, recent_expand: list, forced: bool = False) -> str | None:
    """Why the collection is ready for tracing, or None while growth goes on.

    The scheduler's own stop rule (:func:`vcd.daemon.growth_plan.plan_growth` asked with nothing in
    flight and no back-off; the density is :func:`vcd.post.coverage.collection_stats`'): the density
    target reached, ``max_patches`` reached, or expansion saturated. ``forced`` (the time budget's
    growth share spent) makes it ready as soon as there is a patch."""
    from .growth_plan import plan_growth, saturated
    if not stats.get("patches"):
        return None
    if stats["density"] >= schedule["target_density"]:
        return f"density target reached ({stats['density']:.2f} >= {schedule['target_density']:.2f})"
    if stats["patches"] >= schedule["max_patches"]:
        return f"max_patches reached ({stats['patches']})"
    if saturated(recent_expand, 0):
        return "expansion saturated"
    if not schedule["expansion"]:
        return "expansion off"
    if not plan_growth(schedule, {}, stats, recent_expand, {"active": False}, 0.0):
        return "the scheduler plans no more growth"
    return FORCED if forced else None


#: :func:`growth_finished`'s answer when only the time budget's growth share made it ready
FORCED = "growth time share spent"


# ---------------------------------------------------------------------------- trace planning

def _bands(values: np.ndarray, n: int) -> np.ndarray:
    """Quantile band index 0..n-1 of each value (equal-count bands)."""
    if len(values) == 0:
        return np.zeros(0, int)
    edges = np.quantile(values, np.linspace(0, 1, n + 1)[1:-1]) if n > 1 else np.zeros(0)
    return np.searchsorted(edges, values, side="right")


def seed_candidates(patches: list[PatchGeom], tried: set[str], min_links: int, core_radius: float,
                    covered_max: float) -> list[PatchGeom]:
    """Patches that may seed a trace: not defective, not tried before, at least ``min_links`` links,
    at least ``core_radius`` voxels from the axis (near the core the sheet turns faster than a trace
    cell follows), and at most ``covered_max`` of them already near an accepted trace."""
    return [p for p in patches if not p.defective and p.name not in tried and p.links >= min_links
            and p.radius >= core_radius and p.covered <= covered_max]


def plan_traces(patches: list[PatchGeom], tried: set[str], seeds: list[tuple[float, float]], n: int, *,
                min_links: int = 2, core_radius: float = 0.0, covered_max: float = 0.5,
                bands: int = 3) -> list[str]:
    """Up to ``n`` seed patches for new traces, spread by height and by wrap.

    The collection is split into ``bands`` height bands (patch centre z) × ``bands`` radial bands
    (median distance from the collection's axis: the wraps, outward), by quantiles of the patches
    themselves. Each pick goes to the band pair with the fewest traces so far (``seeds``: (z, radius)
    of earlier seeds) and, among equals, the most uncovered patches; inside it the patch that is
    approved first, then best linked, then largest. ``tried`` patches (seeds of earlier traces) and
    those :func:`seed_candidates` refuses are skipped."""
    if not patches or n <= 0:
        return []
    z = np.array([p.center[2] for p in patches])
    r = np.array([p.radius for p in patches])
    zb, rb = _bands(z, bands), _bands(r, bands)
    band_of = {p.name: (int(a), int(b)) for p, a, b in zip(patches, zb, rb)}
    zq = np.quantile(z, np.linspace(0, 1, bands + 1)[1:-1]) if bands > 1 else np.zeros(0)
    rq = np.quantile(r, np.linspace(0, 1, bands + 1)[1:-1]) if bands > 1 else np.zeros(0)
    load: dict[tuple[int, int], int] = {}
    for sz, sr in seeds:
        key = (int(np.searchsorted(zq, sz, side="right")), int(np.searchsorted(rq, sr, side="right")))
        load[key] = load.get(key, 0) + 1
    cands = seed_candidates(patches, tried, min_links, core_radius, covered_max)
    out: list[str] = []
    while cands and len(out) < n:
        by_band: dict[tuple[int, int], list[PatchGeom]] = {}
        for p in cands:
            by_band.setdefault(band_of[p.name], []).append(p)
        band = min(by_band, key=lambda b: (load.get(b, 0), -len(by_band[b]), b))
        best = max(by_band[band], key=lambda p: (p.approved, p.links, p.area_cm2, p.name))
        out.append(best.name)
        load[band] = load.get(band, 0) + 1
        cands = [p for p in cands if p.name != best.name]
    return out


# ---------------------------------------------------------------------------- the QA gate

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


# ---------------------------------------------------------------------------- duplicates and fusion

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



def near_share(points: np.ndarray, other: cKDTree | None, tol: float) -> float:
    """Share of ``points`` (N×3) within ``tol`` voxels of ``other``'s points."""
    return covered_share(points, other, tol)


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
            s = near_share(pts, trees[k], tol)
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


# ---------------------------------------------------------------------------- timing

#: job kinds per report stage
STAGES = {"growth": ("seed", "expand"), "linking": ("overlap",), "tracing": ("trace",), "retracing": ("retrace",),
          "winding": ("winding",), "fusion": ("fuse",), "render": ("render",)}


def stage_timing(jobs: list[dict]) -> dict:
    """Per stage (:data:`STAGES`): ``jobs`` finished (done or failed), ``wall_s`` (first start to last
    finish, seconds), ``job_s`` (sum of run times), ``cpu_s`` (sum of the workers' CPU seconds the jobs
    reported, ``cpu_seconds`` in their results; ``None`` when none did). ``jobs``: rows with ``kind``,
    ``state``, ``started``, ``finished`` (epoch s) and ``result`` (dict or None)."""
    out = {}
    for stage, kinds in STAGES.items():
        rows = [j for j in jobs if j["kind"] in kinds and j.get("started") is not None and j.get("finished") is not None
                and j["state"] in ("done", "failed")]
        cpu = [float((j.get("result") or {}).get("cpu_seconds")) for j in rows
               if isinstance(j.get("result"), dict) and (j.get("result") or {}).get("cpu_seconds") is not None]
        out[stage] = {"jobs": len(rows),
                      "wall_s": round(max(j["finished"] for j in rows) - min(j["started"] for j in rows), 3)
                      if rows else 0.0,
                      "job_s": round(sum(j["finished"] - j["started"] for j in rows), 3),
                      "cpu_s": round(sum(cpu), 3) if cpu else None}
    return out


def timing_csv(stages: dict, extra: dict | None = None) -> str:
    """The timing CSV: ``stage,jobs,wall_s,job_s,cpu_s`` per stage (+ ``extra`` rows: stage → dict)."""
    lines = ["stage,jobs,wall_s,job_s,cpu_s"]
    for name, s in {**stages, **(extra or {})}.items():
        cpu = "" if s.get("cpu_s") is None else f"{s['cpu_s']:.3f}"
        lines.append(f"{name},{s.get('jobs', 0)},{s.get('wall_s', 0.0):.3f},{s.get('job_s', 0.0):.3f},{cpu}")
    return "\n".join(lines) + "\n"


#: growth jobs in a row, all refused for the same reason with no patch written, after which autoseg
#: concludes the person's params make growth impossible and adapts them (:func:`adapt_growth`)
ADAPT_AFTER = 4
#: the param each refusal class points at, and whether the measured value must be smaller (-1) or larger (+1)
_ADAPTABLE = {"under_min_area": ("min_area_cm", -1), "no_surface_found": ("threshold", -1),
              "seed_does_not_fit": ("step_size", -1)}


def adapt_growth(backoff: dict | None, n_patches: int, current: dict, derived: dict) -> tuple[str, object, str] | None:
    """Whether autoseg overrides a growth param, and with what: ``(key, value, reason class)`` or None.

    ``backoff`` is the scheduler's persisted back-off state (:func:`vcd.daemon.backoff.backoff_state`),
    ``current`` the seed params in force, ``derived`` the ones measured from the prediction
    (:func:`vcd.jobs.autoconf.derive`). It adapts only when nothing has grown (``n_patches`` 0), at least
    :data:`ADAPT_AFTER` growth jobs in a row wrote nothing, all for one reason that names a param, and
    the measured value moves that param the way the reason asks (a smaller ``min_area_cm`` — below the
    largest patch grown, if the measured one is not —, a lower ``threshold``, a smaller ``step_size``)."""
    if n_patches or not backoff:
        return None
    streak, top = int(backoff.get("streak") or 0), backoff.get("top")
    if streak < ADAPT_AFTER or int(backoff.get("top_count") or 0) < streak or top not in _ADAPTABLE:
        return None
    key, sign = _ADAPTABLE[top]
    cur, new = current.get(key), derived.get(key)
    if cur is None or new is None:
        return None
    if key == "min_area_cm" and backoff.get("largest_cm2") and new >= backoff["largest_cm2"]:
        new = float(f"{0.5 * backoff['largest_cm2']:.2g}")
    if (new - cur) * sign <= 0:
        return None
    return key, new, top


# ---------------------------------------------------------------------------- final sheets: tiling, self-contact

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


# ---------------------------------------------------------------------------- keep going while it helps

def gap_seeds(samples: np.ndarray, patch_tree: cKDTree | None, tried: np.ndarray, tol: float, k: int,
              spread: float) -> np.ndarray:
    """Up to ``k`` seed points (M×3 ``(x, y, z)``) on predicted surface that no patch covers: samples
    farther than ``tol`` voxels from every patch point (``patch_tree``), farther than ``spread`` from
    every point seeded before (``tried``, T×3) and from each other; in sample order (random)."""
    if not len(samples) or k <= 0:
        return np.empty((0, 3))
    free = samples
    if patch_tree is not None:
        free = free[patch_tree.query(free, distance_upper_bound=tol)[0] > tol]
    if len(tried) and len(free):
        free = free[cKDTree(tried).query(free, distance_upper_bound=spread)[0] > spread]
    out: list[np.ndarray] = []
    for p in free:
        if all(np.linalg.norm(p - q) > spread for q in out):
            out.append(p)
            if len(out) == k:
                break
    return np.array(out).reshape(-1, 3)


def stalled(series: list[dict], window_s: float, min_gain: float) -> bool:
    """Whether coverage stopped rising: ``series`` (``{"t": epoch s, "coverage": share}``, oldest first)
    spans at least ``window_s`` and the last ``window_s`` raised coverage by less than ``min_gain``."""
    if len(series) < 2 or series[-1]["t"] - series[0]["t"] < window_s:
        return False
    t_end = series[-1]["t"]
    before = [s for s in series if s["t"] <= t_end - window_s]
    base = before[-1]["coverage"] if before else series[0]["coverage"]
    return max(s["coverage"] for s in series if s["t"] > t_end - window_s) - base < min_gain
