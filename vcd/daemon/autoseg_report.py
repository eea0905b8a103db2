"""The autoseg report: ``traces/autoseg_report.json``, ``.md`` and ``.png`` and ``autoseg_timing.csv``.

Everything is read from the volpkg and the queue (patches, gate records, final sheets, job rows, the
self-configuration plan), so a report can be written at any time, by the daemon when a run becomes
done and by ``vcd autoseg`` when it ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import VcdError
from ..formats.jsonio import atomic_write_json, read_json
from ..formats.tifxyz import read_surface, surface_area_vx2
from ..formats.volpkg import finished_traces, list_patches
from ..jobs.autoconf import load_autoconf, load_samples
from ..kernels.points import densify_grid
from ..post.coverage import collection_stats
from ..post.final_sheets import covered_share, final_sheets, gate_records, sheets_tree
from ..formats.gaterecord import GATE_FILE, read_meta
from . import autoseg_plan as ap
from .autoseg_state import KV_CPU, KV_RUNS, REPORT, job_rows
from .config import cover_tol, tgt_overlap_count
from .queue import JobQueue


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
                       [Path(i["trace"]).name for i in read_meta(d).get("vcd_inputs", [])],
                       "accepted_area_mask": "mask.tif" if (d / "mask.tif").exists() else None})
    tree = sheets_tree(fs["sheets"], 2.0)
    pts = []
    for p, _ in list_patches(volpkg / "paths"):
        try:
            s = read_surface(p)
            pts.append(s.points[s.valid])
        except VcdError:
            continue
    cov = covered_share(np.concatenate(pts), tree, cover_tol(cfg, volpkg)) if pts else 0.0
    kept = [recs[n] for n in fs["kept"] if n in recs]
    corners = sum(r.get("corners", 0) for r in recs.values())
    flagged = sum(r.get("hot_corners", 0) for r in recs.values())
    resid = (sum(r.get("residual_suspicion", 0.0) * r.get("kept_px", 0) for r in kept)
             / max(1, sum(r.get("kept_px", 0) for r in kept)))
    rows = job_rows(q)
    wraps = {Path(str(j["params"].get("trace", ""))).name: (j.get("result") or {}).get("span_wraps")
             for j in rows if j["kind"] == "winding" and j["state"] == "done" and isinstance(j.get("result"), dict)}
    for sh in sheets:
        sh["wraps"] = wraps.get(sh["name"])  # from its winding job (None: not measured)
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
        "trace_runs": trace_runs(rows),
    }
    return data


def trace_runs(rows: list[dict]) -> list[dict]:
    """One entry per finished trace or retrace job (queue rows, :func:`job_rows`): the trace written,
    its seed patch, the way it grew (``flip_x``), area (cm²), corners, run time (s) and why the tracer
    stopped — where a run's coverage ended."""
    out = []
    for j in rows:
        res = j.get("result") if isinstance(j.get("result"), dict) else None
        if j["kind"] not in ("trace", "retrace") or j["state"] != "done" or not res:
            continue
        out.append({"written": res.get("written"), "seed": Path(str(j["params"].get("seed", ""))).name,
                    "flip_x": bool(j["params"].get("flip_x", False)), "area_cm2": res.get("area_cm2"),
                    "corners": res.get("corners"), "stop_reason": res.get("stop_reason"),
                    "seconds": round(j["finished"] - j["started"], 1) if j.get("started") and j.get("finished") else None})
    return out


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
    for d in finished_traces(volpkg):
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


def write_figure(volpkg: Path, d: dict, tol: float) -> Path | None:
    """``traces/autoseg_report.png`` (:func:`vcd.daemon.autoseg_figure.report_figure`); None when the
    volume does not open (the report goes on without a picture). ``tol``: voxels within which a point
    counts as on a sheet (:func:`~vcd.daemon.config.cover_tol`)."""
    from ..formats.volpkg import open_volpkg
    from .autoseg_figure import report_figure
    sheets = [volpkg / "traces" / s["name"] for s in d["final_sheets"]]
    P, state = _point_states(volpkg, sheets, tol, samples=load_samples(volpkg))
    try:
        plan = load_autoconf(volpkg)
        vol = open_volpkg(volpkg).volume((plan or {}).get("volume"))
    except VcdError:
        vol = None
    clouds = []
    for s in sheets:
        try:
            clouds.append(densify_grid(read_surface(s).points, 1.0))
        except VcdError:
            clouds.append(np.empty((0, 3)))
    lines = (d.get("plan") or {}).get("lines") or ["no self-configuration plan (params files and defaults)"]
    cover = f"{d['coverage_of_predicted_surface'] * 100:.1f} %"
    title = f"autoseg {Path(d['volpkg']).name}: {len(sheets)} final sheets, {cover} of the predicted surface covered"
    if d.get("truth"):
        t = d["truth"]
        title += f"; TRUE {t['true_coverage'] * 100:.1f} % at {t['true_switch_rate'] * 100:.3f} % switch"
    return report_figure(volpkg / "traces" / f"{REPORT}.png", P, state, vol, clouds, lines, title)


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
    lines += ["", "## Sheets", "", "| sheet | area cm² | wraps | from | accepted-area mask |", "|---|---|---|---|---|"]
    for s in d["final_sheets"]:
        w = "-" if s.get("wraps") is None else f"{s['wraps']:.2f}"
        lines.append(f"| {s['name']} | {s['area_cm2']:.4f} | {w} | {', '.join(s['fused_from'])} | "
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
    if d.get("trace_runs"):
        lines += ["", "## Traces (where each stopped)", "", "| trace | seed | way | area cm² | corners | s | stop reason |",
                  "|---|---|---|---|---|---|---|"]
        for r in d["trace_runs"]:
            lines.append(f"| {r['written']} | {r['seed']} | {'-u' if r['flip_x'] else '+u'} | {r['area_cm2'] or 0:.4f} | "
                         f"{r['corners']} | {r['seconds']} | {r['stop_reason']} |")
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
        fig = write_figure(volpkg, d, cover_tol(cfg, volpkg))
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

