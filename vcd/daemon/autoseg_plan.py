"""Autosegmentation decisions as pure functions (arrays and plain data in, decisions out).

Used by :class:`vcd.daemon.autoseg.Autoseg`, which gathers their inputs from ``paths/``, ``traces/``
and the queue and acts on what they return; tested in-process in ``tests/autoseg/test_plan.py``.

Conventions: points are ``(x, y, z)`` level-0 voxels; a surface grid is ``[rows, cols, 3]`` with
``-1`` for invalid vertices; a trace's QA map is ``[rows, cols]`` over its *corner* grid (one value
per trace cell, ``-1`` = no corner), and the written trace grid has ``step`` pixels per corner
(written pixel ``(i, j)`` lies at corner ``(i / step, j / step)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..formats.overlaps import linked_to
from .config import ScheduleTable


# ---------------------------------------------------------------------------- the collection's geometry

@dataclass
class PatchGeom:
    """One patch as the planner sees it. ``center``: mean valid point (x, y, z) voxels; ``radius``:
    median xy distance of its points from the collection's axis (voxels); ``links``: entries in its
    ``overlapping.json``; ``covered``: share (0..1) of its points near an accepted trace;
    ``component``: its connected piece of the overlap graph (:func:`link_components`)."""

    name: str
    center: tuple[float, float, float]
    radius: float
    z_range: tuple[float, float]
    links: int
    area_cm2: float = 0.0
    approved: bool = False
    defective: bool = False
    covered: float = 0.0
    component: int = 0


def link_components(names: list[str], links: dict[str, set]) -> dict[str, int]:
    """Connected pieces of the overlap graph (:func:`~vcd.formats.overlaps.linked_to`) among ``names``:
    name -> piece number, 0 the largest (ties by name); links to other names are left out.

    A trace follows links from its seed patch, so it never leaves its seed's piece: where the
    volume's border or a hole cuts the sheet into pieces, every piece needs its own seed."""
    known = set(names)
    graph = {n: links.get(n, set()) & known for n in known}
    seen, pieces = set(), []
    for n in sorted(known):
        if n not in seen:
            piece = linked_to(graph, n)
            seen |= piece
            pieces.append(sorted(piece))
    pieces.sort(key=lambda q: (-len(q), q[0]))
    return {n: i for i, q in enumerate(pieces) for n in q}


def collection_axis(clouds: list[np.ndarray]) -> tuple[float, float]:
    """The scroll's axis as the xy centroid of every patch point (N×3 clouds): from the collection's
    own geometry, no spiral model."""
    pts = [c[:, :2] for c in clouds if len(c)]
    if not pts:
        return (0.0, 0.0)
    allp = np.concatenate(pts)
    return float(allp[:, 0].mean()), float(allp[:, 1].mean())


# ---------------------------------------------------------------------------- when to trace

def growth_finished(schedule: ScheduleTable, stats: dict, recent_expand: list, forced: bool = False) -> str | None:
    """Why the collection is ready for tracing, or None while growth goes on.

    The scheduler's own stop rule (:func:`vcd.daemon.growth_plan.plan_growth` asked with nothing in
    flight and no back-off; the density is :func:`vcd.post.coverage.collection_stats`'): the density
    target reached, ``max_patches`` reached, or expansion saturated. ``forced`` (the time budget's
    growth share spent) makes it ready as soon as there is a patch."""
    from .growth_plan import plan_growth, saturated
    if not stats.get("patches"):
        return None
    if stats["density"] >= schedule.target_density:
        return f"density target reached ({stats['density']:.2f} >= {schedule.target_density:.2f})"
    if stats["patches"] >= schedule.max_patches:
        return f"max_patches reached ({stats['patches']})"
    if saturated(recent_expand, 0):
        return "expansion saturated"
    if not schedule.expansion:
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
    """Patches that may seed a trace: not defective, not tried before, well linked, at least
    ``core_radius`` voxels from the axis (near the core the sheet turns faster than a trace cell
    follows), and at most ``covered_max`` of them already near an accepted trace. Well linked: at
    least ``min_links`` links, or, in a piece of the overlap graph whose patches have fewer (a piece
    the volume's border cuts small), half that piece's median, at least 2."""
    piece_links: dict[int, list[int]] = {}
    for p in patches:
        piece_links.setdefault(p.component, []).append(p.links)
    need = {k: max(2, min(min_links, int(np.median(v)) // 2)) for k, v in piece_links.items()}
    return [p for p in patches if not p.defective and p.name not in tried and p.links >= need[p.component]
            and p.radius >= core_radius and p.covered <= covered_max]


def uncovered_area(patches: list[PatchGeom]) -> dict[int, float]:
    """Per piece of the overlap graph, the patch area (cm²) not near an accepted trace."""
    out: dict[int, float] = {}
    for p in patches:
        out[p.component] = out.get(p.component, 0.0) + p.area_cm2 * (1.0 - p.covered)
    return out


def plan_traces(patches: list[PatchGeom], tried: set[str], seeds: list[tuple[float, float, int]], n: int, *,
                min_links: int = 2, core_radius: float = 0.0, covered_max: float = 0.5,
                bands: int = 3) -> list[str]:
    """Up to ``n`` seed patches for new traces: every piece of the overlap graph first, then spread
    by height and by wrap.

    Each pick goes to the piece (:attr:`PatchGeom.component`) with the fewest traces so far and,
    among equals, the most uncovered patch area (:func:`uncovered_area`): a trace never leaves its
    seed's piece. Inside the piece, the collection is split into ``bands`` height bands (patch centre
    z) × ``bands`` radial bands (median distance from the collection's axis: the wraps, outward), by
    quantiles of the patches themselves; the pick goes to the band pair with the fewest traces and,
    among equals, the most candidates, and there to the patch that is approved first, then best
    linked, then largest. ``seeds``: earlier seeds as ``(z, radius, piece)``.
    ``tried`` patches (seeds of earlier traces) and those :func:`seed_candidates` refuses are skipped."""
    if not patches or n <= 0:
        return []
    z = np.array([p.center[2] for p in patches])
    r = np.array([p.radius for p in patches])
    zb, rb = _bands(z, bands), _bands(r, bands)
    band_of = {p.name: (int(a), int(b)) for p, a, b in zip(patches, zb, rb)}
    zq = np.quantile(z, np.linspace(0, 1, bands + 1)[1:-1]) if bands > 1 else np.zeros(0)
    rq = np.quantile(r, np.linspace(0, 1, bands + 1)[1:-1]) if bands > 1 else np.zeros(0)
    load: dict[tuple[int, int], int] = {}
    piece_load: dict[int, int] = {}
    for sz, sr, sp in seeds:
        key = (int(np.searchsorted(zq, sz, side="right")), int(np.searchsorted(rq, sr, side="right")))
        load[key] = load.get(key, 0) + 1
        piece_load[int(sp)] = piece_load.get(int(sp), 0) + 1
    open_area = uncovered_area(patches)
    cands = seed_candidates(patches, tried, min_links, core_radius, covered_max)
    out: list[str] = []
    while cands and len(out) < n:
        piece = min({p.component for p in cands}, key=lambda k: (piece_load.get(k, 0), -open_area.get(k, 0.0), k))
        by_band: dict[tuple[int, int], list[PatchGeom]] = {}
        for p in cands:
            if p.component == piece:
                by_band.setdefault(band_of[p.name], []).append(p)
        band = min(by_band, key=lambda b: (load.get(b, 0), -len(by_band[b]), b))
        best = max(by_band[band], key=lambda p: (p.approved, p.links, p.area_cm2, p.name))
        out.append(best.name)
        load[band] = load.get(band, 0) + 1
        piece_load[piece] = piece_load.get(piece, 0) + 1
        cands = [p for p in cands if p.name != best.name]
    return out


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
