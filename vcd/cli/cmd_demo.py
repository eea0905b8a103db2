"""``vcd demo``: the product on its embedded default — a synthetic scroll as it arrives (only
``volumes/``, no params files), zero-input ``vcd autoseg`` on it, and its prize-style scores against the
ground truth (true coverage, true sheet-switch rate) beside the run's own estimates.

``vcd demo --walkthrough``: the pipeline step by step instead — the real daemon seeds, expands, links
and traces with the demo's params, a summary scored against the ground truth, a clean stop."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEMO_GROW = {"generations": 15, "step_size": 5, "min_area_cm": 0.0005, "tgt_overlap_count": 12, "seed": None}
DEMO_TRACE = {"step": 2, "src_step": 5, "consensus_default_th": 4, "inlier_base_threshold": 8,
              "global_steps_per_window": 1, "snapshot_every": 0}


def _pick_seed(patches, cell: float) -> Path:
    """The best-linked patch (then the largest) among those lying at least 3 trace cells from the scroll's
    axis, estimated as the xy centroid of all patch points: near the core the sheet turns faster than a
    trace cell can follow (the tutorial's advice: seed where the patches are good). Falls back to all."""
    import numpy as np
    from ..formats.overlaps import read_overlaps
    from ..formats.tifxyz import read_surface
    surfaces = {p: read_surface(p) for p, _ in patches}
    valid = {p: s.points[s.valid] for p, s in surfaces.items()}
    axis = np.concatenate(list(valid.values()))[:, :2].mean(0)
    far = [(p, m) for p, m in patches
           if len(valid[p]) and np.median(np.linalg.norm(valid[p][:, :2] - axis, axis=1)) >= 3 * cell]
    return max(far or patches, key=lambda pm: (len(read_overlaps(pm[0])), float(pm[1].get("area_cm2", 0))))[0]


def _free_port(preferred: int = 9464) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    return 0


#: generous cap (seconds) on every wait for the daemon: a loaded machine is slower, not stuck
WAIT_CAP = 900.0
#: seconds between progress lines while waiting
REPORT_EVERY = 10.0


def _wait(cond, what: str, proc, cap: float = WAIT_CAP, status=None) -> bool:
    """Poll ``cond()`` (a job state in the queue, a file) every 0.5 s until it holds; a progress line
    every :data:`REPORT_EVERY` s (``status()`` adds what is pending). Raises if the daemon exits;
    returns False (with one line) when ``cap`` seconds pass first."""
    t0 = last = time.time()
    while True:
        if cond():
            return True
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited while waiting for {what}")
        now = time.time()
        if now - t0 > cap:
            print(f"      gave up waiting for {what} after {cap:.0f} s", flush=True)
            return False
        if now - last >= REPORT_EVERY:
            last = now
            print(f"      waiting for {what}: {status() + ', ' if status else ''}{now - t0:.0f} s", flush=True)
        time.sleep(0.5)


def _pending(q, kinds) -> str:
    """``"2 overlap queued, 1 running"``-style summary of the jobs of ``kinds`` not yet finished."""
    counts = q.counts()
    parts = [f"{n} {k} {s}" for (k, s), n in sorted(counts.items()) if k in kinds and s in ("queued", "running") and n]
    return ", ".join(parts) or "none pending"


def _make_volpkg(out: Path, args) -> list[str]:
    """Step 1: the synthetic scroll with its params files and ``vcd.toml``; returns the pipeline kinds."""
    from ..jobs import KIND_MODULES
    from ..synth import make_scroll
    print(f"[1/5] synthetic scroll {tuple(args.shape)} (z, y, x), preset {args.preset} -> {out}", flush=True)
    make_scroll(out, shape=tuple(args.shape), preset=args.preset, seed=args.seed)
    (out / "seed.json").write_text(json.dumps({**DEMO_GROW, "mode": "seed"}, indent=4) + "\n")
    (out / "expand.json").write_text(json.dumps({**DEMO_GROW, "mode": "expansion"}, indent=4) + "\n")
    (out / "trace_params.json").write_text(json.dumps(DEMO_TRACE, indent=4) + "\n")
    after = [k for k in ("winding", "render") if k in KIND_MODULES]
    (out / "vcd.toml").write_text(
        "[daemon]\nworkers = 2\nlease_seconds = 30\nshutdown_timeout = 20\n"
        "[schedule]\nseed_count = 6\nexpand_queue = 2\ninterval_seconds = 1.0\ntarget_density = 1.0\n"
        f"max_patches = {args.patches}\n[pipeline]\nafter_trace = {json.dumps(after)}\n")
    return after


def _start_daemon(out: Path, port: int) -> subprocess.Popen:
    """Step 2: the real daemon in a child process, JSON log in ``.vcd/daemon.log``."""
    from ..formats.volpkg import state_dir
    log_path = state_dir(out) / "daemon.log"
    print(f"[2/5] starting the daemon (status page: http://127.0.0.1:{port}/, metrics: http://127.0.0.1:{port}/metrics, "
          f"log: {log_path})", flush=True)
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "vcd", "daemon", str(out), "--metrics-addr",
                                 f"127.0.0.1:{port}", "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT)


def _stop_daemon(proc: subprocess.Popen, cap: float = 120.0) -> None:
    """SIGTERM, then wait for the daemon to exit (it lets running jobs finish for ``shutdown_timeout``,
    20 s here, then requeues them); SIGKILL only if it is still there after ``cap`` seconds."""
    if proc.poll() is None:
        print("stopping the daemon ...", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(cap)
        except subprocess.TimeoutExpired:
            print(f"      the daemon did not exit within {cap:.0f} s; killed", flush=True)
            proc.kill()
            proc.wait()
    print("daemon stopped", flush=True)


def _growth_verdict(q, cfg, stats: dict) -> str | None:
    """Why the daemon's scheduler has stopped growing, or None while it would queue more.

    The decision is the scheduler's own (:func:`vcd.daemon.growth_plan.plan_growth`) on the inputs it
    reads — the ``[schedule]`` config, :func:`~vcd.daemon.scheduler.collection_stats` (links per
    patch) and the newest expand results — asked with no growth job in flight and no back-off, so
    "no more growth planned" means a stop condition holds; the text names which one, with numbers."""
    from ..daemon.growth_plan import plan_growth, saturated
    s = cfg.schedule
    recent = q.recent_results("expand", 4)
    if not stats["patches"] or plan_growth(s, {}, stats, recent, {"active": False}, time.time()):
        return None
    if stats["density"] >= s.target_density:
        return (f"link target reached: {_linked(stats)} (target: {s.target_density * 100:.0f} % of "
                f"patches)")
    if stats["patches"] >= s.max_patches:
        return f"patch limit reached ({stats['patches']} >= max_patches {s.max_patches})"
    if saturated(recent, 0):
        return "expansion saturated (the last 4 expand jobs found no under-covered place)"
    return "the scheduler plans no more growth"


def _linked(stats: dict) -> str:
    """``"9 of 25 patches have >= 12 links"``: the scheduler's density measure, in words."""
    n = stats["patches"]
    return f"{n - stats['overlap_deficit']} of {n} patches have >= {DEMO_GROW['tgt_overlap_count']} links"


def _grow(q, out: Path, args, proc) -> str:
    """Step 3: let the daemon seed and expand until its scheduler stops (:func:`_growth_verdict`) or
    ``--grow-seconds``; then pause it, cancel queued growth and wait until every patch is linked.
    Returns the line saying what was reached."""
    from ..daemon.config import load_config
    from ..daemon.scheduler import collection_stats
    cfg = load_config(out)
    print(f"[3/5] seeding and expanding until the daemon's scheduler stops (max_patches {args.patches}, or "
          f"every patch with >= {DEMO_GROW['tgt_overlap_count']} links, or saturated) ...", flush=True)
    t0, last, verdict = time.time(), time.time(), None
    while verdict is None:
        if proc.poll() is not None:
            raise RuntimeError("daemon exited")
        stats = collection_stats(out, DEMO_GROW["tgt_overlap_count"])
        verdict = _growth_verdict(q, cfg, stats)
        if verdict is None and time.time() - t0 > args.grow_seconds:
            verdict = f"stopped by --grow-seconds {args.grow_seconds:.0f} before the scheduler stopped"
        elif verdict is None and time.time() - last >= REPORT_EVERY:
            last = time.time()
            print(f"      {_linked(stats)}, after {last - t0:.0f} s", flush=True)
        time.sleep(0.5)
    print(f"      {verdict}", flush=True)
    q.set_kv("paused", True)
    _wait(lambda: not q.list(state="running", kind="expand") and not q.list(state="running", kind="seed"),
          "running growth jobs", proc, status=lambda: _pending(q, ("seed", "expand")))
    for j in q.list(state="queued"):
        if j["kind"] in ("seed", "expand"):
            q.cancel(j["id"])
    _wait(lambda: not q.list(state="queued", kind="overlap") and not q.list(state="running", kind="overlap"),
          "linking", proc, status=lambda: _pending(q, ("overlap",)))
    return verdict


def _trace(q, out: Path, patches, args, after: list[str], proc) -> dict:
    """Step 4: one trace from the best-placed patch, as a user-requested job; waits for it and for the
    pipeline jobs the watcher queues after it. Returns the trace job's row."""
    from .. import jobs
    from ..formats.overlaps import read_overlaps
    from ..jobs import trace as trace_job
    from ..trace.params import TraceParams
    seed = _pick_seed(patches, cell=DEMO_TRACE["step"] * DEMO_TRACE["src_step"])
    print(f"[4/5] tracing from {seed.name} ({len(read_overlaps(seed))} overlaps) ...", flush=True)
    (out / "traces").mkdir(exist_ok=True)
    params = trace_job.Params(volume=str(out / "volumes" / "synth_pred.zarr"), src_dir=str(out / "paths"),
                              tgt_dir=str(out / "traces"), seed=str(seed), trace=TraceParams.from_dict(DEMO_TRACE))
    jid = jobs.submit(q, "trace", params, by_user=True)
    _wait(lambda: q.get(jid)["state"] in ("done", "failed"), "the trace", proc, cap=args.trace_seconds,
          status=lambda: f"{q.get(jid)['state']}, {q.get(jid)['progress'] * 100:.0f} %")
    if q.get(jid)["state"] == "done":  # the watcher queues the pipeline once it has seen the trace
        _wait(lambda: all(q.list(kind=k, limit=1) for k in after), "the watcher to queue " + " and ".join(after),
              proc)
    _wait(lambda: all(j["state"] in ("done", "failed", "cancelled") for j in q.list(limit=1000)),
          "pipeline jobs", proc, status=lambda: _pending(q, tuple(after) + ("overlap", "retrace")))
    return q.get(jid)


def _summary(q, out: Path, patches, job: dict, after: list[str], verdict: str) -> list[tuple[str, str]]:
    """Step 5: (label, value) rows scoring patches and trace against the ground truth, with why growth
    stopped (``verdict``) and the links per patch the scheduler counts, after linking finished."""
    from ..daemon.config import load_config
    from ..daemon.scheduler import collection_stats
    from ..formats.tifxyz import read_surface
    from ..synth import load_truth
    from ..synth.score import coverage, score_surface
    truth = load_truth(out)
    grids = [read_surface(p).points for p, _ in patches]
    scores = [score_surface(g, truth) for g in grids]
    area = sum(float(m.get("area_cm2", 0)) for _, m in patches)
    stats = collection_stats(out, DEMO_GROW["tgt_overlap_count"])  # after linking finished
    rows = [("patches", f"{len(patches)}"), ("growth stopped", verdict),
            ("links (scheduler's measure)", f"{_linked(stats)} (the scheduler's target: "
                                            f"{load_config(out).schedule.target_density * 100:.0f} %)"),
            ("patch area", f"{area:.3f} cm²"),
            ("true sheet covered (2 vx)", f"{coverage(grids, truth) * 100:.1f} %"),
            ("patch distance to truth", f"mean {sum(s['mean_dist'] for s in scores) / len(scores):.2f} vx"),
            ("patches with sheet jumps", f"{sum(s['jumps'] > 0 for s in scores)} / {len(scores)}")]
    if job["state"] != "done":
        return rows + [("trace", f"failed: {job['error']}")]
    res = json.loads(job["result"])
    tdir = out / "traces" / res["written"]
    ts = score_surface(read_surface(tdir).points, truth)
    rows += [("trace", tdir.name), ("trace area", f"{res['area_cm2']:.4f} cm²"),
             ("trace wraps (jump-free piece)", f"{ts['wraps_covered']:.2f}"),
             ("trace sheet jumps", f"{ts['jumps']}"), ("trace distance to truth", f"mean {ts['mean_dist']:.2f} vx"),
             ("trace QA", f"{res['qa_suspicious']} suspicious corners -> {tdir / 'qa.png'}")]
    for kind in after:
        done = [j for j in q.list(kind=kind, limit=50) if j["state"] == "done"]
        rows.append((f"{kind} job", "done" if done else "not done"))
    return rows


def _fresh_out(args) -> Path | None:
    """``--out`` resolved and empty: an old demo is replaced under ``--force``; without it, one error
    line and None."""
    out = Path(args.out).resolve()
    if out.exists():
        if not args.force:
            print(f"error: {out} exists; pass --force to replace it", file=sys.stderr)
            return None
        shutil.rmtree(out)
    return out


def _autoseg_demo(args) -> int:
    """Zero-input autoseg on a fresh synthetic scroll in a child ``vcd autoseg`` (its output streamed),
    then the report's estimates next to the truth."""
    from ..synth import make_scroll
    out = _fresh_out(args)
    if out is None:
        return 1
    t0 = time.time()
    print(f"[1/3] a synthetic {args.preset} scroll {'x'.join(map(str, args.shape))} (z, y, x) in {out}: only "
          "volumes/ (no seed.json, expand.json, trace_params.json, vcd.toml), as a scroll arrives", flush=True)
    make_scroll(out, shape=tuple(args.shape), preset=args.preset, seed=args.seed)
    print(f"[2/3] vcd autoseg {out.name} --minutes {args.minutes:g}: it measures the prediction, configures "
          "itself, seeds, grows, links, traces, QA-gates and fuses", flush=True)
    port = _free_port()
    cmd = [sys.executable, "-m", "vcd", "autoseg", str(out), "--minutes", str(args.minutes),
           "--metrics-addr", f"127.0.0.1:{port}"]  # its status page while it runs (the run's line prints the URL)
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        return 130
    rep_path = out / "traces" / "autoseg_report.json"
    if not rep_path.exists():
        print(f"error: autoseg wrote no report (exit {rc}); see {out / '.vcd' / 'autoseg.log'}", file=sys.stderr)
        return 1
    rep = json.loads(rep_path.read_text())
    t = rep.get("truth") or {}
    print("[3/3] scores: the run's own estimates (no truth needed) and the ground truth", flush=True)
    rows = [("final sheets", f"{len(rep['final_sheets'])} ({rep['traced_area_cm2']:.4f} cm² traced)"),
            ("coverage", f"estimated {rep['coverage_of_predicted_surface'] * 100:.1f} % of the predicted surface"
                         f" | TRUE {t.get('true_coverage', 0) * 100:.1f} % of the sheet (same wrap)"),
            ("sheet switches", f"estimated {rep['est_switch_share'] * 100:.2f} % | TRUE "
                               f"{t.get('true_switch_rate', 0) * 100:.3f} %"),
            ("prize line (>= 70 % at <= 0.5 %)", "met" if t.get("prize_line_met") else "not met"),
            ("human input", "none"), ("wall time", f"{time.time() - t0:.0f} s")]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    print(f"\nLook at: {out / 'traces' / 'autoseg_report.md'} (and .png), open {out} in VC3D", flush=True)
    return 0 if rc == 0 else rc


def _demo(args) -> int:
    if not args.walkthrough:
        return _autoseg_demo(args)
    from ..daemon.queue import JobQueue
    from ..formats.volpkg import list_patches, state_dir
    out = _fresh_out(args)
    if out is None:
        return 1
    t_start, port = time.time(), _free_port()
    after = _make_volpkg(out, args)
    proc = _start_daemon(out, port)
    try:
        _wait(lambda: (state_dir(out) / "vcd.sqlite").exists(), "the daemon to create its queue", proc)
        q = JobQueue.for_volpkg(out)
        verdict = _grow(q, out, args, proc)
        patches = list_patches(out / "paths")
        if not patches:
            print("error: no patches were grown (see the daemon log)", file=sys.stderr)
            return 1
        job = _trace(q, out, patches, args, after, proc)
        print("[5/5] summary", flush=True)
        counts = q.counts()
        rows = _summary(q, out, patches, job, after, verdict) + [
            ("jobs done / failed", f"{sum(n for (k, s), n in counts.items() if s == 'done')} / "
                                   f"{sum(n for (k, s), n in counts.items() if s == 'failed')}"),
            ("wall time", f"{time.time() - t_start:.0f} s")]
        w = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{w}}  {v}")
        print(f"\nLook at: {out / 'paths'} (open {out} in VC3D), {out / 'traces'}, "
              f"`vcdctl --volpkg {out} status`, metrics were at http://127.0.0.1:{port}/metrics")
        return 0 if job["state"] == "done" else 1
    finally:
        _stop_daemon(proc)


def register(sub) -> None:
    """Add the ``vcd demo`` subcommand to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("demo", help="zero-input autoseg on a synthetic scroll, scored against its truth "
                                    "(--walkthrough: the pipeline step by step)")
    p.add_argument("--walkthrough", action="store_true",
                   help="seed, expand, link and trace step by step with the demo's params instead of autoseg")
    p.add_argument("--minutes", type=float, default=8.0, help="autoseg's time budget (it usually finishes earlier)")
    p.add_argument("--workers", type=int, default=0, help="autoseg's worker processes (0 = [daemon] workers)")
    p.add_argument("--out", default="demo.volpkg")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--shape", nargs=3, type=int, default=[80, 160, 160], metavar=("Z", "Y", "X"))
    p.add_argument("--preset", default="medium", choices=["easy", "medium", "hard"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patches", type=int, default=80, help="walkthrough: the daemon's max_patches")
    p.add_argument("--grow-seconds", type=float, default=600,
                   help="cap on growth (seconds) if the scheduler has not stopped by then")
    p.add_argument("--trace-seconds", type=float, default=WAIT_CAP, help="cap on the wait for the trace (seconds)")
    p.set_defaults(func=_demo)
