"""``vcd autoseg VOLPKG [--minutes N] [--config FILE]``: the daemon's machinery (the same queue, workers,
watcher, scheduler and jobs; :func:`vcd.daemon.service.run_daemon` in this process) with ``[autoseg]
enabled``, until the autoseg tick says the scroll is done or N minutes pass; then it stops everything
cleanly, writes ``traces/autoseg_report.json`` / ``.md`` / ``autoseg_timing.csv`` (with the true
coverage and sheet-switch rate when ``synth_truth.json`` is present) and prints a summary.

Resumable: the queue (``.vcd/vcd.sqlite``), ``paths/`` and ``traces/`` are durable, so after a kill -9
the next run continues from what exists. Ctrl-C stops cleanly, writes the report and exits 130. The
daemon's JSON log goes to ``<volpkg>/.vcd/autoseg.log``. See docs/autoseg.md.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from ..daemon.autoseg_state import KV_FORCE, KV_RUNS, KV_STATE

#: seconds between progress lines
REPORT_EVERY = 15.0


def _status_line(q, t0: float) -> str:
    st = q.get_kv(KV_STATE, {}) or {}
    pend = st.get("pending") or {}
    busy = ", ".join(f"{n} {k}" for k, n in pend.items() if n) or "none"
    return (f"  {time.time() - t0:6.0f} s  phase {st.get('phase', 'starting')}: {st.get('patches', 0)} patches "
            f"(density {st.get('density', 0):.2f}), {st.get('traces', 0)} traces, pending jobs: {busy}")


def _truth_score(volpkg: Path, sheets: list[Path]) -> dict | None:
    """The prize-style scores of the final sheets when the volpkg is a ``vcd synth`` one."""
    from ..formats.tifxyz import read_surface
    from ..synth import load_truth
    from ..synth.prize import prize_score
    if not (volpkg / "synth_truth.json").exists():
        return None
    truth = load_truth(volpkg)
    return prize_score([read_surface(d).points for d in sheets], truth)


def _redirect_stderr(path: Path):
    """Point fd 2 (this process and the workers it spawns) at ``path``; returns the saved fd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


def _restore_stderr(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def _run(volpkg: Path, cfg, minutes: float, grow_share: float) -> tuple[str, float]:
    """Run the daemon in a thread until done / time / Ctrl-C; returns (status, wall seconds)."""
    from ..daemon.lock import refuse_if_running
    from ..daemon.queue import JobQueue
    from ..daemon.service import run_daemon
    from ..formats.volpkg import state_dir
    refuse_if_running(volpkg)  # a second autoseg stops here, before it writes anything (issue 31)
    stop = threading.Event()
    box: dict = {}

    def body():
        try:
            box["rc"] = run_daemon(volpkg, cfg, stop)
        except BaseException as exc:  # surfaced in the main thread
            box["exc"] = exc
    state_dir(volpkg).mkdir(exist_ok=True)
    q = JobQueue.for_volpkg(volpkg)
    q.set_kv(KV_STATE, {"phase": "starting", "done": False})
    runs = list(q.get_kv(KV_RUNS, []) or [])
    t0 = time.time()
    runs.append({"start": t0, "last": t0})
    saved = _redirect_stderr(state_dir(volpkg) / "autoseg.log")
    th = threading.Thread(target=body, name="vcd-autoseg-daemon", daemon=True)
    th.start()
    status, last = "stopped", 0.0
    try:
        while True:
            now = time.time()
            runs[-1]["last"] = now
            q.set_kv(KV_RUNS, runs)
            if not th.is_alive():
                status = "daemon exited"
                break
            if (q.get_kv(KV_STATE, {}) or {}).get("done"):
                status = "done"
                break
            if minutes and now - t0 >= grow_share * minutes * 60 and not q.get_kv(KV_FORCE):
                q.set_kv(KV_FORCE, True)
                print(f"  growth share of the budget spent ({grow_share:.0%}): tracing from now on", flush=True)
            if minutes and now - t0 >= minutes * 60:
                status = f"time budget of {minutes:g} min spent"
                break
            if now - last >= REPORT_EVERY:
                last = now
                print(_status_line(q, t0), flush=True)
            time.sleep(1.0)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        print("stopping the daemon (running jobs finish or go back to the queue) ...", flush=True)
        stop.set()
        while th.is_alive():
            try:
                th.join(1.0)
            except KeyboardInterrupt:  # a second Ctrl-C: the stop is already under way
                status = "interrupted"
        _restore_stderr(saved)
        runs[-1]["last"] = time.time()
        q.set_kv(KV_RUNS, runs)
    if "exc" in box:
        raise box["exc"]
    return status, time.time() - t0


def _summary(d: dict, status: str) -> list[tuple[str, str]]:
    rows = [("status", status), ("patches", f"{d['patches']} ({d['patch_area_cm2']:.4f} cm², density {d['density']:.2f})"),
            ("traces gated / accepted", f"{d['traces']} / {d['accepted_traces']}"),
            ("final sheets", f"{len(d['final_sheets'])} in traces/ ({', '.join(s['name'] for s in d['final_sheets'][:4])}"
                             f"{' …' if len(d['final_sheets']) > 4 else ''})"),
            ("traced area", f"{d['traced_area_cm2']:.4f} cm²"),
            ("coverage of predicted surface", f"{d['coverage_of_predicted_surface'] * 100:.1f} %"),
            ("QA flagged / est. switch kept", f"{d['qa_flagged_share'] * 100:.2f} % / {d['est_switch_share'] * 100:.2f} %"),
            ("CPU", f"{d['cpu_s_total']:.0f} s"), ("wall (all runs)", f"{d['wall_s']:.0f} s"),
            ("human hours", f"{d['human_hours']}")]
    t = d.get("truth")
    if t:
        rows += [("TRUE coverage", f"{t['true_coverage'] * 100:.1f} % (same wrap, {t['tol_vx']:g} vx)"),
                 ("TRUE sheet-switch rate", f"{t['true_switch_rate'] * 100:.3f} %"),
                 ("prize line (>=70 % at <=0.5 %)", "met" if t["prize_line_met"] else "not met")]
        if d["traced_area_cm2"] > 0:
            rows.append(("CPU per cm²", f"{d['cpu_s_total'] / d['traced_area_cm2']:.0f} s/cm²"))
    return rows


def _effective_params(volpkg: Path, cfg, plan: dict | None) -> dict[str, dict]:
    """The params each growth/trace job would get: the plan's derived params under the params files
    and ``[params.<kind>]`` (:func:`vcd.daemon.config.job_params`'s layers, the plan given in memory)."""
    from ..daemon.config import job_params
    out = {}
    for kind in ("seed", "expand", "trace"):
        base = dict((plan or {}).get("derived", {}).get(kind, {}))
        base.update(job_params(cfg.replace(autoseg={"self_configure": False}), volpkg, kind))
        base.update((plan or {}).get("adapted", {}).get(kind, {}))
        out[kind] = base
    return out


def _print_params(volpkg: Path, cfg, plan: dict | None) -> None:
    """Each kind's params in force, and which keys a person's params file or ``[params.*]`` set."""
    derived = (plan or {}).get("derived", {})
    for kind, params in _effective_params(volpkg, cfg, plan).items():
        mine = {k for k, v in params.items() if derived.get(kind, {}).get(k) != v}
        keys = ", ".join(f"{k} {v}{' (yours)' if k in mine else ''}" for k, v in params.items() if k != "mode")
        print(f"  in force, {kind}: {keys or 'VC3D defaults'}")


def _self_configure(volpkg: Path, cfg) -> dict:
    """Measure the prediction and store the plan (:func:`vcd.jobs.autoconf.autoconf`); prints it."""
    from ..jobs.autoconf import autoconf, plan_lines
    print("measuring the prediction to configure growth and tracing ...", flush=True)
    plan = autoconf(volpkg, cfg.daemon.volume or None)
    for line in plan_lines(plan):
        print(f"  {line}")
    _print_params(volpkg, cfg, plan)
    return plan


def _dry_run(volpkg: Path, cfg) -> int:
    """``--dry-run``: print the measured plan and the params each job would get; run and write nothing."""
    from ..jobs.autoconf import autoconf, load_autoconf, plan_lines
    plan = None
    if cfg.autoseg.self_configure:
        plan = load_autoconf(volpkg) or autoconf(volpkg, cfg.daemon.volume or None, write=False)
        for line in plan_lines(plan):
            print(f"  {line}")
    else:
        print("  self-configuration off ([autoseg] self_configure = false): params files and VC3D defaults only")
    _print_params(volpkg, cfg, plan)
    print("dry run: nothing queued or written", flush=True)
    return 0


def _autoseg(args) -> int:
    from ..daemon.autoseg import gate_remaining
    from ..daemon.autoseg_report import write_report
    from ..daemon.config import cover_tol
    from ..post.final_sheets import final_sheets, finish_sheets
    from ..daemon.config import load_config
    from ..formats.volpkg import open_volpkg
    volpkg = Path(args.volpkg).resolve()
    open_volpkg(volpkg)
    over = {"autoseg": {"enabled": True}, "daemon": {"metrics_addr": args.metrics_addr, "log_format": "json"}}
    if args.workers:
        over["daemon"]["workers"] = args.workers
    cfg = load_config(volpkg, args.config, over)
    if args.dry_run:
        return _dry_run(volpkg, cfg)
    if cfg.autoseg.self_configure:
        _self_configure(volpkg, cfg)
    print(f"autoseg {volpkg} ({cfg.daemon.workers} workers, "
          f"{f'{args.minutes:g} min budget' if args.minutes else 'no time limit'}; log: .vcd/autoseg.log"
          + (f"; status page: http://{cfg.daemon.metrics_addr}/" if cfg.daemon.metrics_addr else "")
          + ")", flush=True)
    status, wall = _run(volpkg, cfg, args.minutes, args.grow_share)
    print(f"run ended: {status}; writing the report ...", flush=True)
    try:
        late = gate_remaining(volpkg, cfg)
        if late:
            print(f"  gated {len(late)} trace(s) that finished as the daemon stopped", flush=True)
        if status != "done":  # a done run's last tick made them tile already
            finish_sheets(volpkg, cover_tol(cfg, volpkg))
        truth = _truth_score(volpkg, final_sheets(volpkg)["sheets"])
        d = write_report(volpkg, cfg, status, truth)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    rows = _summary(d, status)
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    print(f"report: {volpkg / 'traces' / 'autoseg_report.md'}", flush=True)
    if status == "interrupted":
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status != "daemon exited" else 1


def register(sub) -> None:
    """Add the ``vcd autoseg`` subcommand to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("autoseg", help="seed, grow, link, trace, QA-gate and fuse by itself until covered or "
                                       "--minutes pass; writes traces/autoseg_report.json/.md")
    p.add_argument("volpkg")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget (0 = until done)")
    p.add_argument("--config", help="TOML config (default: $VCD_CONFIG or VOLPKG/vcd.toml)")
    p.add_argument("--workers", type=int, help="worker processes (default: [daemon] workers)")
    p.add_argument("--grow-share", type=float, default=0.5,
                   help="share of --minutes after which tracing starts even if growth is not finished")
    p.add_argument("--metrics-addr", default="", help="HOST:PORT for /metrics and the status page at / ('' = off, the default)")
    p.add_argument("--dry-run", action="store_true",
                   help="measure the prediction, print the params autoseg would use and why; run nothing")
    p.set_defaults(func=_autoseg)
