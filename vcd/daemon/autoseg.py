"""Autosegmentation inside the daemon (``[autoseg] enabled = true``; ``vcd autoseg`` runs it to the end).

Every ``[autoseg] interval_seconds`` the :class:`Autoseg` tick, on the scheduler's thread:

1. **QA gate** — every new trace in ``traces/`` (with provenance, not a debug snapshot) is gated once:
   its hot spots (``qa.tif`` >= ``qa_threshold``, grown by ``qa_dilate`` corners) are cut, only the
   piece holding the seed patch is kept (:func:`~vcd.daemon.autoseg_plan.qa_gate`), the result is
   written as the trace's ``mask.tif`` (VC3D's mask: 255 = kept — the prize's accepted-area mask) and
   what was cut and why goes into its ``meta.json`` under ``vcd_autoseg`` and into
   ``autoseg_qa.json`` beside it. A trace keeping less than ``min_kept_share`` is rejected.
2. **Trace planning** — once growth is finished by the scheduler's own rule
   (:func:`~vcd.daemon.autoseg_plan.growth_finished`) or the kv flag ``autoseg_force_trace`` is set
   (``vcd autoseg`` sets it when the growth share of its time budget is spent), up to
   ``parallel_traces`` trace jobs are kept queued/running, seeded by
   :func:`~vcd.daemon.autoseg_plan.plan_traces` on the collection's geometry (patch centres, distance
   from the collection's axis, links) minus what accepted traces already cover.
3. **Fusion** — when no trace is pending and no seed is left, accepted traces are compared
   (:func:`~vcd.daemon.autoseg_plan.sheet_relations`): duplicates are dropped, overlapping traces of
   the same sheet (shared supporting patches) are fused with the ``fuse`` job (holes of the larger
   filled from the other).
4. **State** — kv ``autoseg_state`` (phase, done, counts) for ``vcd autoseg`` and ``vcdctl``; the
   report (:func:`write_report`) when the run becomes done.

Durable: everything is derived from ``paths/``, ``traces/`` and the queue each tick, so a killed
run resumes from what exists.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from .. import jobs
from ..errors import VcdError
from ..formats.jsonio import atomic_write_json, read_json
from ..formats.overlaps import link_sets
from ..formats.provenance import read_provenance
from ..formats.tifxyz import read_surface, surface_area_vx2, update_meta, write_mask
from ..formats.volpkg import list_patches, list_traces
from ..post.coverage import collection_stats
from . import autoseg_plan as ap
from ..jobs.autoconf import autoconf, autoconf_path, load_autoconf, load_samples
from .backoff import KV_STATE as KV_BACKOFF
from .config import job_params, tgt_overlap_count
from .queue import JobQueue

#: trace params autoseg uses where ``trace_params.json`` / ``[params.trace]`` say nothing (``src_step``:
#: the patches' step): one-patch-step cells, the windowed optimisation on, no debug snapshots
TRACE_DEFAULTS = {"step": 1, "global_steps_per_window": 1, "snapshot_every": 0, "consensus_default_th": 6,
                  "consensus_limit_th": 2, "inlier_base_threshold": 8}
KV_STATE = "autoseg_state"
KV_FORCE = "autoseg_force_trace"
KV_FUSED = "autoseg_fused"
KV_CPU = "autoseg_cpu_s"
KV_RUNS = "autoseg_runs"
KV_COVERAGE = "autoseg_coverage"
KV_GAP_TRIED = "autoseg_gap_tried"
GATE_FILE = "autoseg_qa.json"
REPORT = "autoseg_report"
PENDING = ("queued", "running")
#: once the normal seeds are used up and coverage still rises, a patch with up to this share of its points
#: on accepted traces may seed a trace (with 2 links)
RELAXED_COVERED_MAX = 0.8
#: an accepted trace with more than this share of its points on a larger kept one adds nothing: dropped
DUP_SHARE = 0.95


def trace_dirs(volpkg: Path) -> list[Path]:
    """The finished traces (:func:`vcd.formats.volpkg.list_traces`, not ``vcd_incomplete``) in
    ``traces/``, oldest first."""
    return [d for d, meta in list_traces(volpkg, roots=("traces",)) if not meta.get("vcd_incomplete")]


def _meta(d: Path) -> dict:
    try:
        m = read_json(d / "meta.json", "surface meta.json")
        return m if isinstance(m, dict) else {}
    except VcdError:
        return {}


def _jobs(q: JobQueue, kinds: tuple[str, ...] | None = None, limit: int = 100000) -> list[dict]:
    """Full rows (params and result parsed) of the queue's jobs of ``kinds`` (all kinds: None)."""
    rows = [r for k in kinds for r in q.list(kind=k, limit=limit)] if kinds else q.list(limit=limit)
    out = []
    for row in rows:
        full = q.get(row["id"])
        if full is None:
            continue
        try:
            full["result"] = json.loads(full["result"]) if full.get("result") else None
        except ValueError:
            full["result"] = None
        out.append(full)
    return out


class Autoseg:
    """The autosegmentation tick (see the module docstring). ``find_volume()`` returns the prediction
    volume's path or None (the scheduler's :meth:`~vcd.daemon.scheduler.Scheduler.volume`)."""

    def __init__(self, volpkg: Path, queue_path: Path, cfg, find_volume, log):
        self.volpkg = Path(volpkg)
        self.queue = JobQueue(queue_path)
        self.cfg = cfg
        self.a = cfg["autoseg"]
        self.find_volume = find_volume
        self.log = log
        self._lock = threading.Lock()
        self._geom_key = None
        self._geom: tuple = ([], {}, (0.0, 0.0))
        self._clouds: dict[str, tuple] = {}  # patch name -> ((x.tif, mask.tif mtimes), valid points N×3)
        self.last_state: dict = {}
        self._sample_cache = None
        if self.a["self_configure"] and load_autoconf(self.volpkg) is None:
            self._self_configure()

    def _self_configure(self) -> None:
        """Measure the prediction before the first growth job (``vcd daemon`` with ``[autoseg] enabled``;
        ``vcd autoseg`` has done it already): :func:`vcd.jobs.autoconf.autoconf`. A volume that cannot
        be measured leaves the params files and defaults in force, with one log line."""
        try:
            vol = self.find_volume()
            plan = autoconf(self.volpkg, Path(vol).name if vol else None)
            self.log.info("autoseg_self_configured", volume=plan["volume"], **plan["derived"]["seed"])
        except (VcdError, OSError, ValueError) as exc:
            self.log.warning("autoseg_self_configure_failed", error=f"{type(exc).__name__}: {exc}",
                             hint="params files and VC3D defaults stay in force")

    # ------------------------------------------------------------------ the tick
    def tick(self) -> dict:
        """One round: gate, plan, fuse, publish the state (errors are logged, never raised)."""
        with self._lock:
            t0 = time.thread_time()
            try:
                state = self._tick()
            except Exception as exc:  # never stop the scheduler
                self.log.warning("autoseg_error", error=f"{type(exc).__name__}: {exc}")
                state = {**self.last_state, "error": f"{type(exc).__name__}: {exc}"}
            q = self.queue
            q.set_kv(KV_CPU, float(q.get_kv(KV_CPU, 0.0)) + time.thread_time() - t0)
            if state.get("done") and not self.last_state.get("done"):
                self.log.info("autoseg_done", **{k: v for k, v in state.items() if k != "done"})
                try:
                    finish_sheets(self.volpkg)
                    write_report(self.volpkg, self.cfg, status="done")
                except Exception as exc:
                    self.log.warning("autoseg_report_failed", error=f"{type(exc).__name__}: {exc}")
            self.last_state = state
            q.set_kv(KV_STATE, state)
            return state

    def _tick(self) -> dict:
        q = self.queue
        traces = trace_dirs(self.volpkg)
        for d in traces:
            if "vcd_autoseg" not in _meta(d):
                self.gate(d)
        for d in sorted((self.volpkg / "traces").glob("fuse_fill_*")):
            if (d / "meta.json").exists() and not (d / GATE_FILE).exists():
                rec = gate_fused(d)
                self.log.info("autoseg_fused_gated", sheet=d.name, status=rec["status"], cut_px=rec["cut_px"])
        tjobs = _jobs(q, ("trace", "retrace", "fuse", "overlap"))
        pending = {k: sum(1 for j in tjobs if j["kind"] == k and j["state"] in PENDING)
                   for k in ("trace", "retrace", "fuse", "overlap")}
        stats = collection_stats(self.volpkg, self.tgt_overlap_count())
        self.adapt(stats["patches"])
        why = ap.growth_finished(self.cfg["schedule"], stats, q.recent_results("expand", 4),
                                 bool(q.get_kv(KV_FORCE, False)))
        state = {"phase": "growing", "done": False, "patches": stats["patches"], "density": round(stats["density"], 3),
                 "traces": len(traces), "pending": pending, "ready": why}
        if why is None:
            return state
        sheets = final_sheets(self.volpkg)
        patches, clouds, axis = self.geometry(sheets["accepted"])
        series = self.measure_coverage(sheets["sheets"], clouds)
        if series:
            state["coverage"] = series[-1]["coverage"]
        gap = self.gap_seed(clouds)
        state["gap_seeds"] = gap
        tried = {Path(j["params"].get("seed", "")).name for j in tjobs if j["kind"] == "trace"}
        seeds = [(p.center[2], p.radius) for p in patches if p.name in tried]
        n_traces = sum(1 for j in tjobs if j["kind"] == "trace")
        room = min(int(self.a["parallel_traces"]) - pending["trace"] - pending["retrace"],
                   int(self.a["max_traces"]) - n_traces)
        planned = []
        if room > 0:  # (patches not linked yet have no links: never candidates)
            planned = ap.plan_traces(patches, tried, seeds, room, min_links=self.min_links(patches),
                                     core_radius=self.core_radius(), covered_max=float(self.a["covered_max"]))
            if not planned and series and not ap.stalled(series, float(self.a["stall_seconds"]),
                                                         float(self.a["stall_gain"])):
                # keep going while it helps: patches mostly off the final sheets, fewer links required
                planned = ap.plan_traces(patches, tried, seeds, room, min_links=2, core_radius=self.core_radius(),
                                         covered_max=RELAXED_COVERED_MAX)
            for name in planned:
                self.submit_trace(self.volpkg / "paths" / name)
        state.update(phase="tracing", planned=planned, accepted=len(sheets["accepted"]))
        if planned or pending["trace"] or pending["retrace"] or pending["overlap"]:
            return state
        fused = self.fuse(sheets)
        if fused or pending["fuse"]:
            return {**state, "phase": "fusing"}
        helps = not ap.stalled(series, float(self.a["stall_seconds"]), float(self.a["stall_gain"]))
        if series and helps and (gap["queued"] or gap["pending"]):  # gap seeding: the uncovered surface shrinks
            return {**state, "phase": "seeding gaps"}
        if why == ap.FORCED and (helps or not series):  # growth goes on (time budget): new patches may seed more traces
            return {**state, "phase": "tracing while growing"}
        return {**state, "phase": "done", "done": True, "why_done": "coverage stalled" if series and not helps
                else "growth finished, nothing pending"}

    def measure_coverage(self, sheets: list[Path], clouds: dict) -> list[dict]:
        """Coverage of the predicted surface over time (kv ``autoseg_coverage``): every
        ``coverage_every`` seconds, the share of the predicted-surface samples (``.vcd/autoconf_samples.npy``)
        within :meth:`sample_tol` of a final sheet's kept area, and the share on a patch. [] without samples."""
        samples = self._samples()
        if samples is None or not len(samples):
            return []
        series = list(self.queue.get_kv(KV_COVERAGE, []) or [])
        now = time.time()
        if series and now - series[-1]["t"] < float(self.a["coverage_every"]):
            return series
        tol = self.sample_tol()
        tree = sheets_tree(sheets, tol)
        on_sheet = ap.covered_share(samples, tree, tol) if tree is not None else 0.0
        pt = self._patch_tree(clouds)
        on_patch = ap.covered_share(samples, pt, tol) if pt is not None else 0.0
        series.append({"t": now, "coverage": round(on_sheet, 4), "on_patch": round(on_patch, 4),
                       "sheets": len(sheets), "patches": len(clouds)})
        self.queue.set_kv(KV_COVERAGE, series)
        return series

    def _samples(self):
        if self._sample_cache is None:
            self._sample_cache = load_samples(self.volpkg)
        return self._sample_cache

    def sample_tol(self) -> float:
        """Voxels within which a predicted-surface sample counts as covered: half the measured band
        thickness (p90) plus the samples' own error plus :meth:`tol`."""
        plan = load_autoconf(self.volpkg) or {}
        th = ((plan.get("measured") or {}).get("thickness") or {}).get("p90") or 2.0
        return 0.5 * th + float((plan.get("samples") or {}).get("error_vx", 0.0)) + self.tol()

    def _patch_tree(self, clouds: dict):
        from scipy.spatial import cKDTree
        pts = [c for c in clouds.values() if len(c)]
        return cKDTree(np.concatenate(pts)) if pts else None

    def gap_seed(self, clouds: dict) -> dict:
        """Keep up to ``[autoseg] gap_seeds`` explicit seed jobs queued on predicted-surface samples no
        patch covers (:func:`~vcd.daemon.autoseg_plan.gap_seeds`), each place tried once (kv
        ``autoseg_gap_tried``). Returns ``{"queued": new jobs, "pending": seed jobs waiting or running}``."""
        q, want = self.queue, int(self.a["gap_seeds"])
        counts = q.counts()
        pending = sum(counts.get(("seed", st), 0) for st in PENDING)
        samples = self._samples()
        room = want - pending
        if samples is None or not len(samples) or room <= 0:
            return {"queued": 0, "pending": pending}
        vol = self.find_volume()
        if vol is None:
            return {"queued": 0, "pending": pending}
        tried = np.array(q.get_kv(KV_GAP_TRIED, []) or [], dtype=np.float64).reshape(-1, 3)
        tol = self.sample_tol()
        pts = ap.gap_seeds(samples, self._patch_tree(clouds), tried, tol, room, spread=4.0 * self.patch_step())
        if not len(pts):
            return {"queued": 0, "pending": pending}
        from ..jobs import seed as seed_kind
        raw = job_params(self.cfg, self.volpkg, "seed")
        for p in pts:
            params = seed_kind.params_for(raw, str(vol), str(self.volpkg / "paths"), seed_point=[float(v) for v in p])
            jobs.submit(q, "seed", params, max_attempts=self.cfg.daemon.max_attempts)
        q.set_kv(KV_GAP_TRIED, np.concatenate([tried, pts]).round(1).tolist())
        self.log.info("autoseg_gap_seeds", n=len(pts), tried=len(tried) + len(pts))
        return {"queued": len(pts), "pending": pending + len(pts)}

    def adapt(self, n_patches: int) -> None:
        """Override the person's growth param that makes growth impossible (every recent growth job
        refused for one reason, :func:`~vcd.daemon.autoseg_plan.adapt_growth`) with the measured one,
        in ``.vcd/autoconf.json`` ``adapted`` (read by :func:`~vcd.daemon.config.job_params`); one log line."""
        plan = load_autoconf(self.volpkg)
        if plan is None:
            return
        try:
            current = job_params(self.cfg, self.volpkg, "seed")
        except VcdError:
            return
        hit = ap.adapt_growth(self.queue.get_kv(KV_BACKOFF), n_patches, current, plan["derived"]["seed"])
        if hit is None:
            return
        key, value, why = hit
        for kind in ("seed", "expand"):
            plan.setdefault("adapted", {}).setdefault(kind, {})[key] = value
        line = (f"{key} {current[key]} (seed.json / expand.json / [params.seed]) makes growth impossible: the last "
                f"{ap.ADAPT_AFTER}+ growth jobs were all refused ({why}); autoseg uses {key} {value}, measured from "
                f"the prediction")
        plan.setdefault("adapt_log", []).append({"time": time.time(), "key": key, "was": current[key],
                                                 "now": value, "reason": why, "message": line})
        atomic_write_json(autoconf_path(self.volpkg), plan)
        self.log.warning("autoseg_adapted", key=key, was=current[key], now=value, reason=why, message=line)

    # ------------------------------------------------------------------ inputs
    def tgt_overlap_count(self) -> int:
        return tgt_overlap_count(self.cfg, self.volpkg)

    def min_links(self, patches) -> int:
        """``[autoseg] min_links``, or (0) half the median links, at least 2."""
        if int(self.a["min_links"]) > 0:
            return int(self.a["min_links"])
        links = [p.links for p in patches]
        return max(2, int(np.median(links) // 2)) if links else 2

    def patch_step(self) -> float:
        """Voxels per patch pixel (the patches' ``step_size``): ``1 / scale`` of a patch, else expand.json's."""
        for _, meta in list_patches(self.volpkg / "paths")[:1]:
            s = meta.get("scale")
            if isinstance(s, list) and s and s[0]:
                return float(round(1.0 / float(s[0]), 3))
        try:
            return float(job_params(self.cfg, self.volpkg, "expand").get("step_size", 20))
        except VcdError:
            return 20.0

    def trace_params(self) -> dict:
        """The autoseg trace params: :data:`TRACE_DEFAULTS` and ``src_step``, under the volpkg's
        ``trace_params.json`` / ``[params.trace]``."""
        return {**TRACE_DEFAULTS, "src_step": self.patch_step(), **job_params(self.cfg, self.volpkg, "trace")}

    def cell(self) -> float:
        p = self.trace_params()
        return float(p["step"]) * float(p["src_step"])

    def core_radius(self) -> float:
        return float(self.a["core_cells"]) * self.cell()

    def tol(self) -> float:
        """Voxels within which a point counts as on an accepted trace: ``[autoseg] cover_tol`` or
        (0) a third of the patch step, at least 2."""
        t = float(self.a["cover_tol"])
        return t if t > 0 else max(2.0, self.patch_step() / 3.0)

    def geometry(self, accepted: list[Path]):
        """(:class:`~vcd.daemon.autoseg_plan.PatchGeom` list, name → N×3 valid points, axis), cached
        until a patch or an accepted trace changes."""
        patches = list_patches(self.volpkg / "paths")
        key = (tuple((p.name, (p / "overlapping.json").stat().st_mtime if (p / "overlapping.json").exists() else 0)
                     for p, _ in patches), tuple(a.name for a in accepted))
        if key == self._geom_key:
            return self._geom
        clouds = {}
        for p, _ in patches:
            stamp = (p / "x.tif").stat().st_mtime if (p / "x.tif").exists() else 0
            stamp = (stamp, (p / "mask.tif").stat().st_mtime if (p / "mask.tif").exists() else 0)
            hit = self._clouds.get(p.name)
            if hit is not None and hit[0] == stamp:
                clouds[p.name] = hit[1]
                continue
            try:
                s = read_surface(p)
                clouds[p.name] = s.points[s.valid].astype(np.float64)
                self._clouds[p.name] = (stamp, clouds[p.name])
            except VcdError:
                continue
        axis = ap.collection_axis(list(clouds.values()))
        tree = sheets_tree(accepted, self.tol())
        links = link_sets(self.volpkg / "paths")
        out = []
        for p, meta in patches:
            pts = clouds.get(p.name)
            if pts is None or not len(pts):
                continue
            tags = meta.get("tags") if isinstance(meta.get("tags"), dict) else {}
            r = float(np.median(np.hypot(pts[:, 0] - axis[0], pts[:, 1] - axis[1])))
            out.append(ap.PatchGeom(p.name, tuple(pts.mean(0)), r, (float(pts[:, 2].min()), float(pts[:, 2].max())),
                                    len(links.get(p.name, ())), float(meta.get("area_cm2") or 0), "approved" in tags,
                                    "defective" in tags, ap.covered_share(pts, tree, self.tol())))
        self._geom_key, self._geom = key, (out, clouds, axis)
        return self._geom

    # ------------------------------------------------------------------ actions
    def submit_trace(self, seed: Path) -> int | None:
        """Queue a trace job from ``seed`` with :meth:`trace_params` (None while no volume is usable)."""
        vol = self.find_volume()
        if vol is None:
            return None
        params = {**self.trace_params(), "volume": str(vol), "src_dir": str(self.volpkg / "paths"),
                  "tgt_dir": str(self.volpkg / "traces"), "seed": str(seed)}
        jid = jobs.submit(self.queue, "trace", params, max_attempts=self.cfg.daemon.max_attempts)
        self.log.info("autoseg_trace_queued", seed=seed.name, job_id=jid)
        return jid

    def gate(self, trace: Path) -> dict:
        """The QA gate of one trace (see the module docstring); returns its record."""
        rec = gate_trace(trace, self.volpkg / "paths", float(self.a["qa_threshold"]), int(self.a["qa_dilate"]),
                         float(self.a["min_kept_share"]), self.tol())
        self.log.info("autoseg_gated", trace=trace.name, status=rec["status"], cut_px=rec["cut_px"],
                      kept_px=rec["kept_px"], hot=rec["hot_corners"])
        return rec

    def fuse(self, sheets: dict) -> list[int]:
        """Queue the ``fuse`` jobs :func:`final_sheets` asks for that were never queued; returns their ids."""
        if not self.a["fuse"]:
            return []
        q = self.queue
        done = dict(q.get_kv(KV_FUSED, {}) or {})
        out = []
        for ref, others in sheets["fuse"].items():
            key = "+".join([ref] + sorted(others))
            if key in done:
                continue
            root = self.volpkg / "traces"
            inputs = [[str(root / n), str(root / n / "winding.tif") if (root / n / "winding.tif").exists() else None, 1.0]
                      for n in [ref] + sorted(others)]
            jid = jobs.submit(q, "fuse", {"inputs": inputs, "params": {}, "out_dir": str(root)},
                              max_attempts=self.cfg.daemon.max_attempts)
            done[key] = jid
            out.append(jid)
            self.log.info("autoseg_fuse_queued", ref=ref, others=sorted(others), job_id=jid)
        q.set_kv(KV_FUSED, done)
        return out


# ---------------------------------------------------------------------------- the gate, on disk

def _anchor(trace_pts: np.ndarray, valid: np.ndarray, seed_dir: Path, tol: float) -> np.ndarray | None:
    """Written pixels of the trace within ``tol`` voxels of its seed patch (None if unreadable)."""
    from scipy.spatial import cKDTree
    try:
        s = read_surface(seed_dir)
    except VcdError:
        return None
    cloud = ap.densify_grid(s.points, tol)
    if not len(cloud):
        return None
    d, _ = cKDTree(cloud).query(trace_pts[valid], distance_upper_bound=tol + 1e-6)
    out = np.zeros(valid.shape, bool)
    out[valid] = np.isfinite(d)
    return out


def gate_trace(trace: Path, paths: Path, threshold: float = 0.5, dilate: int = 2, min_kept_share: float = 0.2,
               tol: float = 2.0) -> dict:
    """Gate one trace on disk: cut (``mask.tif``), record (``meta.json`` ``vcd_autoseg`` and
    ``autoseg_qa.json``); returns the record. Status ``accepted`` or ``rejected`` (kept share below
    ``min_kept_share``, or no QA map)."""
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
    g = ap.qa_gate(qmap, valid, step, threshold, dilate, comps, s0, anchor)
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


def fuse_inputs(fused: Path) -> list[str]:
    """Names of a fused sheet's input traces, the reference first (from its ``vcd_inputs``)."""
    return [Path(i.get("trace", "")).name for i in _meta(fused).get("vcd_inputs", []) if isinstance(i, dict)]


def gate_fused(fused: Path, tol: float = 2.0) -> dict:
    """Gate a ``fuse_fill_*`` sheet (:func:`~vcd.daemon.autoseg_plan.fused_keep`): filled cells that
    are only inpainted or that cross to another wrap are cut (``mask.tif``), the record written to
    ``autoseg_qa.json``; returns it."""
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
    others = [ap.densify_grid(read_surface(root / n).points, tol) for n in names[1:] if (root / n).is_dir()]
    others = [o for o in others if len(o)]
    on_other = np.zeros(s.valid.shape, bool)
    if others:
        d, _ = cKDTree(np.concatenate(others)).query(s.points[s.valid], distance_upper_bound=tol + 1e-6)
        on_other[s.valid] = np.isfinite(d)
    keep, cut_fill, filled = ap.fused_keep(s.points, ref.valid, on_other)
    rec.update(status="accepted", why=f"{filled - cut_fill} of {filled} filled cells kept (on traced data, no long "
                                      "edge)", cut_px=int((s.valid & ~keep).sum()), kept_px=int(keep.sum()),
               filled_px=filled, filled_cut_px=cut_fill, hot_corners=0, reasons={})
    return _record(fused, rec, keep)


# ---------------------------------------------------------------------------- final sheets

def sheets_tree(traces: list[Path], tol: float):
    """A KD-tree of the (masked, densified) points of ``traces`` (None without points)."""
    from scipy.spatial import cKDTree
    clouds = []
    for t in traces:
        try:
            clouds.append(ap.densify_grid(read_surface(t).points, tol))
        except VcdError:
            continue
    clouds = [c for c in clouds if len(c)]
    return cKDTree(np.concatenate(clouds)) if clouds else None


def gate_records(volpkg: Path) -> dict[str, dict]:
    """name → gate record of every gated trace."""
    out = {}
    for d in trace_dirs(Path(volpkg)):
        if (d / GATE_FILE).exists():
            try:
                out[d.name] = read_json(d / GATE_FILE, "autoseg QA record")
            except VcdError:
                continue
    return out


def final_sheets(volpkg: Path, tol: float = 2.0) -> dict:
    """The final sheets from what is on disk: accepted traces not superseded by a retrace, minus
    duplicates, with fusion pairs and finished fusions. Returns ``{"accepted": [dirs], "kept": [names],
    "duplicates": {name: of}, "fuse": {ref: [others]}, "fused": {ref: fuse dir}, "sheets": [dirs]}``."""
    volpkg = Path(volpkg)
    recs = gate_records(volpkg)
    superseded = {r.get("retrace_of") for r in recs.values() if r.get("retrace_of")}
    accepted = [volpkg / "traces" / n for n, r in sorted(recs.items())
                if r.get("status") == "accepted" and n not in superseded]
    clouds, patches = {}, {}
    for d in accepted:
        clouds[d.name] = ap.densify_grid(read_surface(d).points, tol)
        patches[d.name] = set(((read_provenance(d) or {}).get("patches") or {}).keys())
    order = sorted(clouds, key=lambda n: (-len(clouds[n]), n))
    rel = ap.sheet_relations(clouds, order, tol, DUP_SHARE, shared_patches=patches)
    fused = {}
    root = volpkg / "traces"
    if root.is_dir():
        for d in sorted(root.glob("fuse_fill_*")):
            ins = fuse_inputs(d)
            rec = read_json(d / GATE_FILE, "autoseg QA record") if (d / GATE_FILE).exists() else {}
            if rec.get("status") == "accepted" and ins and ins[0] in rel["fuse"] and set(ins[1:]) == set(rel["fuse"][ins[0]]):
                fused[ins[0]] = d
    sheets = [fused.get(n, volpkg / "traces" / n) for n in rel["kept"]]
    return {"accepted": accepted, "kept": rel["kept"], "duplicates": rel["duplicates"], "fuse": rel["fuse"],
            "fused": {k: v.name for k, v in fused.items()}, "sheets": sheets}


def finish_sheets(volpkg: Path, tol: float | None = None) -> dict:
    """Make the final sheets tile and never touch themselves, in their ``mask.tif`` (255 = kept):

    1. each sheet's self-contacts (a vertex within 1.5 voxels of one more than 3 cells away) and normal
       flips are cut with a cell around them, and its largest piece kept (:func:`~.autoseg_plan.clean_sheet`);
    2. sheets in priority order (:func:`final_sheets`: largest first, a fused sheet in its reference's
       place) give up what an earlier one covers within ``tol`` voxels (default a third of the patch
       step, >= 2; :func:`~.autoseg_plan.tile`), so the traced area is their union.

    Writes a mask only where something changes, records ``vcd_autoseg_final`` in each sheet's
    ``meta.json``; returns ``{sheet name: counts}``."""
    volpkg = Path(volpkg)
    tol = tol or max(2.0, _patch_step(volpkg) / 3.0)
    sheets = final_sheets(volpkg)["sheets"]
    surfs, keeps, recs = [], [], {}
    for d in sheets:
        try:
            s = read_surface(d)
        except VcdError:
            continue
        keep, counts = ap.clean_sheet(s.points, s.valid)
        surfs.append((d, s))
        keeps.append(keep)
        recs[d.name] = counts
    verts = [s.points[k].astype(np.float64) for (_, s), k in zip(surfs, keeps)]
    dense = [ap.densify_grid(np.where(k[..., None], s.points, -1.0).astype(np.float32), tol)
             for (_, s), k in zip(surfs, keeps)]
    covered = ap.tile(verts, dense, tol)
    for (d, s), keep, hit in zip(surfs, keeps, covered):
        final = keep.copy()
        final[keep] = ~hit
        final, dropped = ap.keep_piece(final)  # tiling may split a sheet: it stays one piece
        rec = {**recs[d.name], "tiled_px": int(hit.sum()), "kept_px": int(final.sum()),
               "pieces_dropped": recs[d.name].get("pieces_dropped", 0) + int(dropped),
               "dropped_px": int(s.valid.sum() - final.sum())}
        recs[d.name] = rec
        if rec["dropped_px"]:
            write_mask(d, np.where(final, 255, 0).astype(np.uint8))
        update_meta(d, lambda m, rec=rec: {**m, "vcd_autoseg_final": rec})
    return recs


# ---------------------------------------------------------------------------- the report

def _voxelsize(volpkg: Path) -> float:
    for _, meta in list_patches(volpkg / "paths")[:5]:
        a, v = meta.get("area_cm2"), meta.get("area_vx2")
        if a and v:
            return float((a / v) ** 0.5 * 1e4)
    return 7.91


def report_data(volpkg: Path, cfg, status: str, truth_score: dict | None = None, wall_s: float | None = None) -> dict:
    """The report's content (see :func:`write_report`)."""
    volpkg = Path(volpkg)
    q = JobQueue.for_volpkg(volpkg)
    stats = collection_stats(volpkg, tgt_overlap_count(cfg, volpkg))
    fs = final_sheets(volpkg)
    recs = gate_records(volpkg)
    vx_cm = _voxelsize(volpkg) * 1e-4
    sheets = []
    for d in fs["sheets"]:
        s = read_surface(d)
        sheets.append({"name": d.name, "area_cm2": round(surface_area_vx2(s.points) * vx_cm ** 2, 6),
                       "fused_from": [d.name] if not d.name.startswith("fuse_fill_") else
                       [Path(i["trace"]).name for i in _meta(d).get("vcd_inputs", [])],
                       "accepted_area_mask": "mask.tif" if (d / "mask.tif").exists() else None})
    tree = sheets_tree(fs["sheets"], 2.0)
    pts = []
    for p, _ in list_patches(volpkg / "paths"):
        try:
            s = read_surface(p)
            pts.append(s.points[s.valid])
        except VcdError:
            continue
    cov = ap.covered_share(np.concatenate(pts), tree, max(2.0, _patch_step(volpkg) / 3.0)) if pts else 0.0
    kept = [recs[n] for n in fs["kept"] if n in recs]
    corners = sum(r.get("corners", 0) for r in recs.values())
    flagged = sum(r.get("hot_corners", 0) for r in recs.values())
    resid = (sum(r.get("residual_suspicion", 0.0) * r.get("kept_px", 0) for r in kept)
             / max(1, sum(r.get("kept_px", 0) for r in kept)))
    rows = _jobs(q)
    stages = ap.stage_timing(rows)
    cpu_auto = float(q.get_kv(KV_CPU, 0.0))
    runs = q.get_kv(KV_RUNS, []) or []
    human_edits = sum(1 for j in rows if j["kind"] == "retrace")
    data = {
        "volpkg": str(volpkg), "status": status, "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "patches": stats["patches"], "patch_area_cm2": round(stats["patch_area_cm2"], 6),
        "density": round(stats["density"], 4), "traces": len(recs),
        "accepted_traces": len(fs["accepted"]), "duplicates": fs["duplicates"], "fused": fs["fused"],
        "final_sheets": sheets, "traced_area_cm2": round(sum(s["area_cm2"] for s in sheets), 6),
        "coverage_of_predicted_surface": round(cov, 4),
        "qa_flagged_share": round(flagged / corners, 5) if corners else 0.0,
        "est_switch_share": round(resid, 5),
        "stages": stages, "autoseg_cpu_s": round(cpu_auto, 3),
        "cpu_s_total": round(sum(s["cpu_s"] or 0.0 for s in stages.values()) + cpu_auto, 3),
        "wall_s": round(wall_s, 1) if wall_s is not None else round(sum(r.get("last", 0) - r.get("start", 0)
                                                                          for r in runs), 1),
        "runs": len(runs), "human_edits": human_edits, "human_hours": round(human_edits * 0.05, 2),
        "gates": recs, "fused_gates": {d.name: read_json(d / GATE_FILE, "autoseg QA record")
                                       for d in sorted((volpkg / "traces").glob("fuse_fill_*")) if (d / GATE_FILE).exists()},
        "truth": truth_score,
        "plan": _plan_section(volpkg),
    }
    return data


def _plan_section(volpkg: Path) -> dict | None:
    """What self-configuration measured and chose (``.vcd/autoconf.json``), for the report."""
    from ..jobs.autoconf import plan_lines
    plan = load_autoconf(volpkg)
    if plan is None:
        return None
    return {"lines": plan_lines(plan), "derived": plan["derived"], "adapted": plan.get("adapted", {}),
            "adapt_log": plan.get("adapt_log", [])}


def _point_states(volpkg: Path, sheets: list[Path], tol: float, limit: int = 200_000,
                  samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points of the predicted surface (``samples``, else the patch points; N×3, at most ``limit``,
    evenly thinned) and their state: 1 on a final sheet's kept area, 2 only on area a QA gate cut (a
    trace's points its ``mask.tif`` drops), 0 uncovered."""
    from scipy.spatial import cKDTree
    pts = [samples] if samples is not None and len(samples) else []
    for p, _ in ([] if pts else list_patches(volpkg / "paths")):
        try:
            s = read_surface(p)
            pts.append(s.points[s.valid])
        except VcdError:
            continue
    if not pts:
        return np.empty((0, 3)), np.empty(0, int)
    P = np.concatenate(pts).astype(np.float64)
    P = P[:: max(1, len(P) // limit)]
    state = np.zeros(len(P), int)
    cut = []
    for d in trace_dirs(volpkg):
        try:
            raw, kept = read_surface(d, apply_mask=False), read_surface(d)
        except VcdError:
            continue
        cut.append(raw.points[raw.valid & ~kept.valid])
    cut = [c for c in cut if len(c)]
    if cut:
        state[cKDTree(np.concatenate(cut)).query(P, distance_upper_bound=tol)[0] <= tol] = 2
    tree = sheets_tree(sheets, tol)
    if tree is not None:
        state[tree.query(P, distance_upper_bound=tol)[0] <= tol] = 1
    return P, state


def write_figure(volpkg: Path, d: dict) -> Path | None:
    """``traces/autoseg_report.png`` (:func:`vcd.daemon.autoseg_figure.report_figure`); None when the
    volume does not open (the report goes on without a picture)."""
    from ..formats.volpkg import open_volpkg
    from .autoseg_figure import report_figure
    sheets = [volpkg / "traces" / s["name"] for s in d["final_sheets"]]
    tol = max(2.0, _patch_step(volpkg) / 3.0)
    P, state = _point_states(volpkg, sheets, tol, samples=load_samples(volpkg))
    try:
        plan = load_autoconf(volpkg)
        vol = open_volpkg(volpkg).volume((plan or {}).get("volume"))
    except VcdError:
        vol = None
    clouds = []
    for s in sheets:
        try:
            clouds.append(ap.densify_grid(read_surface(s).points, 1.0))
        except VcdError:
            clouds.append(np.empty((0, 3)))
    lines = (d.get("plan") or {}).get("lines") or ["no self-configuration plan (params files and defaults)"]
    cover = f"{d['coverage_of_predicted_surface'] * 100:.1f} %"
    title = f"autoseg {Path(d['volpkg']).name}: {len(sheets)} final sheets, {cover} of the predicted surface covered"
    if d.get("truth"):
        t = d["truth"]
        title += f"; TRUE {t['true_coverage'] * 100:.1f} % at {t['true_switch_rate'] * 100:.3f} % switch"
    return report_figure(volpkg / "traces" / f"{REPORT}.png", P, state, vol, clouds, lines, title)


def _patch_step(volpkg: Path) -> float:
    for _, meta in list_patches(volpkg / "paths")[:1]:
        s = meta.get("scale")
        if isinstance(s, list) and s and s[0]:
            return 1.0 / float(s[0])
    return 20.0


def report_markdown(d: dict) -> str:
    """The readable report (``autoseg_report.md``)."""
    fig = [f"![coverage map, slices with the final sheets, params]({d['figure']})", ""] if d.get("figure") else []
    lines = [f"# Autosegmentation report: {Path(d['volpkg']).name}", "", *fig,
             f"status: **{d['status']}**, generated {d['generated_utc']}, wall time {d['wall_s']:.0f} s over "
             f"{d['runs']} run(s), human hours {d['human_hours']}", "",
             "| measure | value |", "|---|---|",
             f"| patches | {d['patches']} ({d['patch_area_cm2']:.4f} cm², density {d['density']:.2f}) |",
             f"| traces gated / accepted | {d['traces']} / {d['accepted_traces']} |",
             f"| final sheets | {len(d['final_sheets'])} |",
             f"| traced area | {d['traced_area_cm2']:.4f} cm² |",
             f"| coverage of the predicted surface (patch points on a final sheet) | {d['coverage_of_predicted_surface'] * 100:.1f} % |",
             f"| QA: corners flagged before cutting | {d['qa_flagged_share'] * 100:.2f} % |",
             f"| QA: estimated sheet-switch share kept | {d['est_switch_share'] * 100:.2f} % |",
             f"| CPU total | {d['cpu_s_total']:.0f} s ({d['cpu_s_total'] / 3600:.3f} h) |"]
    t = d.get("truth")
    if t:
        lines += [f"| **true coverage** (same wrap, within {t['tol_vx']:g} vx) | **{t['true_coverage'] * 100:.1f} %** |",
                  f"| **true sheet-switch rate** | **{t['true_switch_rate'] * 100:.3f} %** |",
                  f"| prize line (>= 70 % at <= 0.5 %) | {'met' if t['prize_line_met'] else 'not met'} |"]
    lines += ["", "## Time per stage", "", "| stage | jobs | wall s | job s | CPU s |", "|---|---|---|---|---|"]
    for name, s in d["stages"].items():
        cpu = "" if s["cpu_s"] is None else f"{s['cpu_s']:.1f}"
        lines.append(f"| {name} | {s['jobs']} | {s['wall_s']:.1f} | {s['job_s']:.1f} | {cpu} |")
    lines.append(f"| autoseg planning/QA (daemon) | | | | {d['autoseg_cpu_s']:.1f} |")
    lines += ["", "## Sheets", "", "| sheet | area cm² | from | accepted-area mask |", "|---|---|---|---|"]
    for s in d["final_sheets"]:
        lines.append(f"| {s['name']} | {s['area_cm2']:.4f} | {', '.join(s['fused_from'])} | "
                     f"{s['accepted_area_mask'] or 'all kept'} |")
    lines += ["", "## QA gate (what was cut and why)", "",
              "| trace | status | kept px | cut px | hot corners | pieces dropped | reasons |", "|---|---|---|---|---|---|---|"]
    for n, r in sorted(d["gates"].items()):
        reasons = ", ".join(f"{k} {v}" for k, v in (r.get("reasons") or {}).items() if v) or "-"
        lines.append(f"| {n} | {r['status']} | {r.get('kept_px', 0)} | {r.get('cut_px', 0)} | "
                     f"{r.get('hot_corners', 0)} | {r.get('pieces_dropped', 0)} | {reasons} |")
    for n, r in sorted(d.get("fused_gates", {}).items()):
        lines.append(f"| {n} (fused) | {r['status']} | {r.get('kept_px', 0)} | {r.get('cut_px', 0)} | - | - | "
                     f"{r.get('why', '')} |")
    if d.get("plan"):
        lines += ["", "## Params autoseg chose (measured from the prediction)", ""]
        lines += [f"- {ln.strip()}" for ln in d["plan"]["lines"]]
        lines += [f"- **adapted**: {a['message']}" for a in d["plan"].get("adapt_log", [])]
    if d["duplicates"]:
        lines += ["", "Duplicates dropped: " + ", ".join(f"{a} (of {b})" for a, b in d["duplicates"].items())]
    return "\n".join(lines) + "\n"


def write_report(volpkg: Path, cfg, status: str, truth_score: dict | None = None,
                 wall_s: float | None = None) -> dict:
    """Write ``traces/autoseg_report.json``, ``.md`` (linking ``.png``: :func:`write_figure`) and
    ``autoseg_timing.csv``; returns the data."""
    volpkg = Path(volpkg)
    d = report_data(volpkg, cfg, status, truth_score, wall_s)
    root = volpkg / "traces"
    root.mkdir(exist_ok=True)
    try:
        fig = write_figure(volpkg, d)
    except (VcdError, OSError, ValueError) as exc:  # a picture never costs the report
        fig, d["figure_error"] = None, f"{type(exc).__name__}: {exc}"
    d["figure"] = fig.name if fig else None
    atomic_write_json(root / f"{REPORT}.json", d)
    _write_text(root / f"{REPORT}.md", report_markdown(d))
    _write_text(root / "autoseg_timing.csv", ap.timing_csv(d["stages"], {"autoseg": {"cpu_s": d["autoseg_cpu_s"]}}))
    return d


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
