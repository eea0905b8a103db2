"""Autosegmentation inside the daemon (``[autoseg] enabled = true``; ``vcd autoseg`` runs it to the end).

Every ``[autoseg] interval_seconds`` the :class:`Autoseg` tick, on the scheduler's thread, reads
``paths/``, ``traces/`` and the queue, decides, and queues jobs; the work itself runs in workers:

1. **QA gate** — every new trace in ``traces/`` (:func:`~vcd.formats.volpkg.finished_traces`) and every
   new fused sheet gets one ``gate`` job (:mod:`vcd.jobs.gate`, :mod:`vcd.post.qa_gate`): its hot
   spots are cut, the piece holding the seed patch kept, the result written as its ``mask.tif``
   (VC3D's mask: 255 = kept — the prize's accepted-area mask) and the record beside it. Planning
   waits while gate jobs are pending.
2. **Trace planning** — once growth is finished by the scheduler's own rule
   (:func:`~vcd.daemon.autoseg_plan.growth_finished`) or the kv flag ``autoseg_force_trace`` is set
   (``vcd autoseg`` sets it when the growth share of its time budget is spent), up to
   ``parallel_traces`` trace jobs are kept queued/running, seeded by
   :func:`~vcd.daemon.autoseg_plan.plan_traces` on the collection's geometry (patch centres, distance
   from the collection's axis, links) minus what accepted traces already cover; then gap seeds and
   relaxed trace seeds while coverage of the predicted surface still grows.
3. **Fusion** — when no trace is pending, accepted traces are compared
   (:func:`vcd.post.final_sheets.final_sheets`): duplicates are dropped, overlapping traces of the
   same sheet are fused with the ``fuse`` job.
4. **Winding** — once nothing else is pending, the final sheets are made to tile
   (:func:`vcd.post.final_sheets.finish_sheets`) and each gets a ``winding`` job (the wraps its kept
   area spans, ``winding.png`` for the status page).
5. **State** — kv ``autoseg_state`` (:mod:`vcd.daemon.autoseg_state`) for ``vcd autoseg`` and
   ``vcdctl``; when the run becomes done (its sheets tiled in step 4), the report is written
   (:mod:`vcd.daemon.autoseg_report`).

Durable: everything is derived from ``paths/``, ``traces/`` and the queue each tick, so a killed
run resumes from what exists.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from .. import jobs
from ..errors import VcdError
from ..formats.jsonio import atomic_write_json
from ..formats.overlaps import link_sets
from ..formats.tifxyz import read_surface
from ..formats.volpkg import finished_traces, list_patches
from ..jobs.autoconf import autoconf, autoconf_path, load_autoconf, load_samples
from ..post.coverage import collection_stats
from ..formats.gaterecord import read_meta
from ..post.final_sheets import covered_share, final_sheets, finish_sheets, sheets_tree
from . import autoseg_plan as ap
from .autoseg_report import write_report
from .autoseg_state import (KV_COVERAGE, KV_CPU, KV_FORCE, KV_FUSED, KV_GAP_TRIED, KV_STATE, PENDING,
                            job_rows)
from .backoff import KV_STATE as KV_BACKOFF
from .config import cover_tol, job_params, patch_step_for, tgt_overlap_count
from .queue import JobQueue

#: trace params autoseg uses where ``trace_params.json`` / ``[params.trace]`` say nothing (``src_step``:
#: the patches' step): one-patch-step cells, the windowed optimisation on, no debug snapshots
TRACE_DEFAULTS = {"step": 1, "global_steps_per_window": 1, "snapshot_every": 0, "consensus_default_th": 6,
                  "consensus_limit_th": 2, "inlier_base_threshold": 8}
#: once the normal seeds are used up and coverage still rises, a patch with up to this share of its points
#: on accepted traces may seed a trace (with 2 links)
RELAXED_COVERED_MAX = 0.8
#: job kinds whose pending jobs hold the tick's later steps back
WAITED_ON = ("gate", "trace", "retrace", "fuse", "overlap", "winding")


class Autoseg:
    """The autosegmentation tick (see the module docstring). ``find_volume()`` returns the prediction
    volume's path or None (the scheduler's :meth:`~vcd.daemon.scheduler.Scheduler.volume`)."""

    def __init__(self, volpkg: Path, queue_path: Path, cfg, find_volume, log):
        self.volpkg = Path(volpkg)
        self.queue = JobQueue(queue_path)
        self.cfg = cfg
        self.a = cfg.autoseg
        self.find_volume = find_volume
        self.log = log
        self._lock = threading.Lock()
        self._geom_key = None
        self._geom: tuple = ([], {}, (0.0, 0.0))
        self._clouds: dict[str, tuple] = {}  # patch name -> ((x.tif, mask.tif mtimes), valid points N×3)
        self.last_state: dict = {}
        self._sample_cache = None
        if self.a.self_configure and load_autoconf(self.volpkg) is None:
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
                try:  # (the sheets were tiled before done: _tick tiles them ahead of their winding jobs)
                    write_report(self.volpkg, self.cfg, status="done")
                except Exception as exc:
                    self.log.warning("autoseg_report_failed", error=f"{type(exc).__name__}: {exc}")
            self.last_state = state
            q.set_kv(KV_STATE, state)
            return state

    def _tick(self) -> dict:
        q = self.queue
        tjobs = job_rows(q, WAITED_ON)
        traces = finished_traces(self.volpkg)
        self.queue_gates(traces, tjobs)
        pending = {k: sum(1 for j in tjobs if j["kind"] == k and j["state"] in PENDING) for k in WAITED_ON}
        stats = collection_stats(self.volpkg, self.tgt_overlap_count())
        self.adapt(stats["patches"])
        why = ap.growth_finished(self.cfg.schedule, stats, q.recent_results("expand", 4),
                                 bool(q.get_kv(KV_FORCE, False)))
        state = {"phase": "growing", "done": False, "patches": stats["patches"], "density": round(stats["density"], 3),
                 "traces": len(traces), "pending": pending, "ready": why}
        if why is None:
            return state
        if pending["gate"]:  # planning reads the gated traces: wait for their records
            return {**state, "phase": "gating"}
        sheets = final_sheets(self.volpkg)
        state["final_sheets"] = [d.name for d in sheets["sheets"]]  # live, for vcdctl and the status page
        patches, clouds, axis = self.geometry(sheets["accepted"])
        series = self.measure_coverage(sheets["sheets"], clouds)
        if series:
            state["coverage"] = series[-1]["coverage"]
        gap = self.gap_seed(clouds)
        state["gap_seeds"] = gap
        tried = {Path(j["params"].get("seed", "")).name for j in tjobs if j["kind"] == "trace"}
        seeds = [(p.center[2], p.radius, p.component) for p in patches if p.name in tried]
        n_traces = sum(1 for j in tjobs if j["kind"] == "trace")
        room = int(self.a.parallel_traces) - pending["trace"] - pending["retrace"]
        if int(self.a.max_traces) > 0:
            room = min(room, int(self.a.max_traces) - n_traces)
        planned = []
        dirs = self.directions()
        n_seeds = -(-room // len(dirs))  # a seed's traces go out together (one over parallel_traces at most)
        if room > 0:  # (patches not linked yet have no links: never candidates)
            planned = ap.plan_traces(patches, tried, seeds, n_seeds, min_links=self.min_links(patches),
                                     core_radius=self.core_radius(), covered_max=float(self.a.covered_max))
            if not planned and series and not ap.stalled(series, float(self.a.stall_seconds),
                                                         float(self.a.stall_gain)):
                # keep going while it helps: patches mostly off the final sheets, fewer links required
                planned = ap.plan_traces(patches, tried, seeds, n_seeds, min_links=2, core_radius=self.core_radius(),
                                         covered_max=RELAXED_COVERED_MAX)
            for name in planned:
                for flip in dirs:
                    self.submit_trace(self.volpkg / "paths" / name, flip_x=flip)
        state.update(phase="tracing", planned=planned, accepted=len(sheets["accepted"]))
        if planned or pending["trace"] or pending["retrace"] or pending["overlap"]:
            return state
        fused = self.fuse(sheets)
        if fused or pending["fuse"]:
            return {**state, "phase": "fusing"}
        helps = not ap.stalled(series, float(self.a.stall_seconds), float(self.a.stall_gain))
        if series and helps and (gap["queued"] or gap["pending"]):  # gap seeding: the uncovered surface shrinks
            return {**state, "phase": "seeding gaps"}
        if why == ap.FORCED and (helps or not series):  # growth goes on (time budget): new patches may seed more traces
            return {**state, "phase": "tracing while growing"}
        if not sheets["tiled"]:  # settle the sheets (tile them), then measure their wraps
            finish_sheets(self.volpkg, self.tol())
            sheets = final_sheets(self.volpkg)
        if self.queue_windings(sheets["sheets"], tjobs) or pending["winding"]:
            return {**state, "phase": "winding"}
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
        if series and now - series[-1]["t"] < float(self.a.coverage_every):
            return series
        tol = self.sample_tol()
        tree = sheets_tree(sheets, tol)
        on_sheet = covered_share(samples, tree, tol) if tree is not None else 0.0
        pt = self._patch_tree(clouds)
        on_patch = covered_share(samples, pt, tol) if pt is not None else 0.0
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
        q, want = self.queue, int(self.a.gap_seeds)
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
        if int(self.a.min_links) > 0:
            return int(self.a.min_links)
        links = [p.links for p in patches]
        return max(2, int(np.median(links) // 2)) if links else 2

    def patch_step(self) -> float:
        return patch_step_for(self.cfg, self.volpkg)

    def trace_params(self) -> dict:
        """The autoseg trace params: :data:`TRACE_DEFAULTS` and ``src_step``, under the volpkg's
        ``trace_params.json`` / ``[params.trace]``."""
        return {**TRACE_DEFAULTS, "src_step": self.patch_step(), **job_params(self.cfg, self.volpkg, "trace")}

    def cell(self) -> float:
        p = self.trace_params()
        return float(p["step"]) * float(p["src_step"])

    def core_radius(self) -> float:
        return float(self.a.core_cells) * self.cell()

    def tol(self) -> float:
        return cover_tol(self.cfg, self.volpkg)

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
        tol = self.tol()
        tree = sheets_tree(accepted, tol)
        links = link_sets(self.volpkg / "paths")
        piece = ap.link_components([p.name for p, _ in patches], links)
        out = []
        for p, meta in patches:
            pts = clouds.get(p.name)
            if pts is None or not len(pts):
                continue
            tags = meta.get("tags") if isinstance(meta.get("tags"), dict) else {}
            r = float(np.median(np.hypot(pts[:, 0] - axis[0], pts[:, 1] - axis[1])))
            out.append(ap.PatchGeom(p.name, tuple(pts.mean(0)), r, (float(pts[:, 2].min()), float(pts[:, 2].max())),
                                    len(links.get(p.name, ())), float(meta.get("area_cm2") or 0), "approved" in tags,
                                    "defective" in tags, covered_share(pts, tree, tol), piece[p.name]))
        self._geom_key, self._geom = key, (out, clouds, axis)
        return self._geom

    # ------------------------------------------------------------------ actions
    def directions(self) -> tuple[bool, ...]:
        """The ``flip_x`` values each seed is traced with: both ways along the sheet with
        ``[autoseg] both_directions`` (a trace grows its columns one way only), else the params' own."""
        if self.a.both_directions:
            return (False, True)
        return (bool(self.trace_params().get("flip_x", False)),)

    def submit_trace(self, seed: Path, flip_x: bool | None = None) -> int | None:
        """Queue a trace job from ``seed`` with :meth:`trace_params` (``flip_x`` given: growing that way);
        None while no volume is usable."""
        vol = self.find_volume()
        if vol is None:
            return None
        params = {**self.trace_params(), "volume": str(vol), "src_dir": str(self.volpkg / "paths"),
                  "tgt_dir": str(self.volpkg / "traces"), "seed": str(seed)}
        if flip_x is not None:
            params["flip_x"] = bool(flip_x)
        jid = jobs.submit(self.queue, "trace", params, max_attempts=self.cfg.daemon.max_attempts)
        self.log.info("autoseg_trace_queued", seed=seed.name, flip_x=params.get("flip_x", False), job_id=jid)
        return jid

    def queue_gates(self, traces: list[Path], rows: list[dict]) -> list[int]:
        """Queue a ``gate`` job (:mod:`vcd.jobs.gate`) for every trace and fused sheet not gated yet and
        without a gate job pending (a trace whose gate job failed for good is not requeued); returns
        the new job ids. The gate itself runs in a worker, never on this thread."""
        asked = asked_for(rows, "gate")
        out = []
        for params in ungated(self.volpkg, traces, gate_params(self.volpkg, self.cfg)):
            if Path(params["trace"]).name in asked:
                continue
            jid = jobs.submit(self.queue, "gate", params, max_attempts=self.cfg.daemon.max_attempts)
            out.append(jid)
            self.log.info("autoseg_gate_queued", trace=Path(params["trace"]).name, fused=params["fused"], job_id=jid)
        return out

    def queue_windings(self, sheets: list[Path], rows: list[dict]) -> list[int]:
        """Queue a ``winding`` job (``vc_tifxyz_winding``: ``winding.tif``/``.png``, the wraps a sheet
        spans) for every final sheet without ``winding.tif`` that never had one; returns the new ids.
        Asked once the sheets are settled, so fusion's inputs do not change under it."""
        asked = asked_for(rows, "winding")
        out = []
        for d in sheets:
            if (d / "winding.tif").exists() or d.name in asked:
                continue
            out.append(jobs.submit(self.queue, "winding", {"trace": str(d), "volpkg": str(self.volpkg)},
                                   priority=jobs.get_spec("gate").priority,  # done waits on it: before growth
                                   max_attempts=self.cfg.daemon.max_attempts))
            self.log.info("autoseg_winding_queued", sheet=d.name, job_id=out[-1])
        return out

    def fuse(self, sheets: dict) -> list[int]:
        """Queue the ``fuse`` jobs :func:`final_sheets` asks for that were never queued; returns their ids."""
        if not self.a.fuse:
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


def asked_for(rows: list[dict], kind: str) -> set[str]:
    """Names of the traces / sheets that jobs of ``kind`` (any state) among the queue ``rows`` were asked for."""
    return {Path(j["params"].get("trace", "")).name for j in rows if j["kind"] == kind}


def ungated(volpkg: Path, traces: list[Path], base: dict) -> list[dict]:
    """``gate`` job params for every trace of ``traces`` and every fused sheet in ``traces/`` that has
    no gate record yet (``meta.json`` without ``vcd_autoseg``); ``base``: :meth:`Autoseg.gate_params`."""
    fused = [d for d in sorted((Path(volpkg) / "traces").glob("fuse_fill_*")) if (d / "meta.json").exists()]
    return [{**base, "trace": str(d), "fused": is_fused}
            for d, is_fused in [(t, False) for t in traces] + [(f, True) for f in fused]
            if "vcd_autoseg" not in read_meta(d)]


def gate_remaining(volpkg: Path, cfg) -> list[dict]:
    """Run the ``gate`` job in this process for every trace still ungated (``vcd autoseg`` after its
    daemon stopped: a trace finished in the last seconds of the budget still gets its record);
    returns the records."""
    from ..jobs import gate
    return [gate.run(params, None) for params in ungated(Path(volpkg), finished_traces(volpkg), gate_params(volpkg, cfg))]


def gate_params(volpkg: Path, cfg) -> dict:
    """The ``gate`` job's params from ``[autoseg]`` (``qa_threshold``, ``qa_dilate``, ``min_kept_share``)
    and :func:`~vcd.daemon.config.cover_tol`, without ``trace`` / ``fused``."""
    a = cfg.autoseg
    return {"paths": str(Path(volpkg) / "paths"), "threshold": float(a.qa_threshold), "dilate": int(a.qa_dilate),
            "min_kept_share": float(a.min_kept_share), "tol": cover_tol(cfg, volpkg)}
