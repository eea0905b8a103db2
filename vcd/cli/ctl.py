"""``vcdctl`` — queue and inspect jobs; works on the SQLite file, so it works when the daemon is down.

Volpkg: ``--volpkg DIR``, else ``$VCD_VOLPKG``, else the volpkg containing the current directory.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
from pathlib import Path

from ..errors import InputError, VcdError


def _find_volpkg(arg: str | None) -> Path:
    """``--volpkg DIR``, else ``$VCD_VOLPKG``, else the volpkg containing the current directory."""
    from ..formats.volpkg import is_volpkg
    cand = arg or os.environ.get("VCD_VOLPKG")
    if cand:
        p = Path(cand)
        if not is_volpkg(p):
            raise InputError(p, "not a volpkg (no config.json)", "pass --volpkg DIR of a .volpkg")
        return p
    p = Path.cwd()
    for d in (p, *p.parents):
        if is_volpkg(d):
            return d
    raise InputError(None, "no volpkg given and none contains the current directory",
                     "pass --volpkg DIR or set VCD_VOLPKG")


def _queue(args):
    from ..daemon.queue import JobQueue
    return JobQueue.for_volpkg(_find_volpkg(args.volpkg))


def _ts(t):
    return "-" if not t else _dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def _parse_params(args) -> dict:
    params: dict = {}
    if args.params:
        from ..formats.jsonio import read_json
        params.update(read_json(args.params, "params JSON"))
        if not isinstance(params, dict):
            raise InputError(args.params, "params JSON is not an object", 'write {"key": value, ...}')
    for kv in args.param or []:
        if "=" not in kv:
            raise InputError(None, f"--param {kv!r} is not key=value", "e.g. --param generations=50")
        k, v = kv.split("=", 1)
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    return params


#: keys whose values are patch *names* in ``paths/``, never resolved as paths
NAME_KEYS = frozenset({"segment"})


def resolve_paths(params: dict, cwd: Path) -> dict:
    """Params with every relative path (keys in ``vcd.jobs.PATH_KEYS``, also inside lists) made
    absolute against ``cwd`` — the caller's working directory, not the daemon's. Numbers and
    ``segment`` (a patch name) are left alone."""
    from ..jobs import PATH_KEYS, is_number

    def fix(v):
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        if isinstance(v, str) and v and not is_number(v) and not os.path.isabs(v):
            return os.path.normpath(os.path.join(cwd, os.path.expanduser(v)))
        return v
    return {k: fix(v) if k in PATH_KEYS and k not in NAME_KEYS else v for k, v in params.items()}


def _defaults(kind: str, vp: Path) -> dict:
    """What the volpkg supplies when the user does not: the prediction volume and directories, and
    the kind's params file (``[params_files]``: seed.json, expand.json, trace_params.json) with the
    vcd.toml overrides — keys given with ``--params`` / ``--param`` win."""
    from ..daemon.config import job_params, load_config
    from ..daemon.service import prediction_volume
    if kind in ("seed", "expand"):
        cfg = load_config(vp)
        base = job_params(cfg, vp, kind)
        base.update(volume=str(prediction_volume(vp, cfg)), paths=str(vp / "paths"))
        return base
    if kind == "trace":
        cfg = load_config(vp)
        return {**job_params(cfg, vp, kind), "volume": str(prediction_volume(vp, cfg)),
                "src_dir": str(vp / "paths"), "tgt_dir": str(vp / "traces")}
    return {}


def _warn_if_no_daemon(vp: Path) -> None:
    from ..daemon.lock import running_daemon
    if running_daemon(vp) is None:
        print(f"warning: no vcd daemon runs on {vp}: the job waits in the queue until one starts "
              f"(`vcd daemon {vp}`)", file=sys.stderr)


def cmd_submit(args) -> int:
    """``vcdctl submit KIND --param key=value …``: queue a job through :func:`vcd.jobs.submit`
    (``by_user``), on the volpkg's params files and defaults; prints its id."""
    from ..jobs import KIND_MODULES
    if args.kind not in KIND_MODULES:
        raise InputError(None, f"unknown job kind {args.kind!r}", f"use one of {sorted(KIND_MODULES)}")
    q = _queue(args)
    vp = _find_volpkg(args.volpkg).resolve()
    params = resolve_paths(_parse_params(args), Path.cwd())
    params = {**_defaults(args.kind, vp), **params}
    if args.kind == "trace" and "seed" not in params:
        raise InputError(None, "a trace job needs a seed patch",
                         "add --param seed=paths/<patch> (relative paths are taken from the current directory)")
    from .. import jobs
    jid = jobs.submit(q, args.kind, params, priority=args.priority, by_user=True)
    print(jid)
    _warn_if_no_daemon(vp)
    return 0


def cmd_ls(args) -> int:
    """``vcdctl ls``: the newest jobs, optionally of one state or kind."""
    q = _queue(args)
    rows = q.list(state=args.state, kind=args.kind, limit=args.limit)
    print(f"{'ID':>6} {'KIND':8} {'STATE':9} {'TRY':>3} {'PROG':>5} {'CREATED':8} {'FINISHED':8} MESSAGE/ERROR")
    for r in rows:
        msg = (r["error"] or r["message"] or "").replace("\n", " ")[:70]
        print(f"{r['id']:>6} {r['kind']:8} {r['state']:9} {r['attempts']:>3} {_pct(r['progress']):>5} "
              f"{_ts(r['created']):8} {_ts(r['finished']):8} {msg}")
    return 0


def cmd_show(args) -> int:
    """``vcdctl show ID``: one job's row, params, result and log tail."""
    q = _queue(args)
    job = q.get(args.id)
    if job is None:
        raise InputError(None, f"no job {args.id}", "list jobs with `vcdctl ls`")
    for k in ("id", "kind", "state", "priority", "attempts", "max_attempts", "progress", "message", "worker",
              "error"):
        print(f"{k}: {job[k]}")
    print(f"created: {_ts(job['created'])}  started: {_ts(job['started'])}  finished: {_ts(job['finished'])}")
    print("params: " + json.dumps(job["params"], indent=2))
    if job["result"]:
        print("result: " + json.dumps(json.loads(job["result"]), indent=2))
    tail = q.log_tail(args.id)
    if tail:
        print("log tail:")
        print("\n".join(tail))
    return 0


def cmd_cancel(args) -> int:
    """``vcdctl cancel ID``: cancel a queued job or ask a running one to stop."""
    print(_queue(args).cancel(args.id))
    return 0


def cmd_retry(args) -> int:
    """``vcdctl retry ID``: queue a failed or cancelled job again."""
    if not _queue(args).retry(args.id):
        raise InputError(None, f"job {args.id} is not failed or cancelled", "only finished jobs can be retried")
    print("queued")
    return 0


def cmd_pause(args) -> int:
    """``vcdctl pause`` / ``resume``: stop or restart the scheduler's own growth jobs."""
    _queue(args).set_kv("paused", args.cmd == "pause")
    print("paused" if args.cmd == "pause" else "resumed")
    return 0


def daemon_line(vp: Path) -> str:
    """``daemon: running (pid .., host .., since .., version .., metrics ..)`` or ``daemon: not running``,
    from the volpkg's daemon lock (``vcd.daemon.lock``)."""
    from ..daemon.lock import running_daemon, since_text
    info = running_daemon(vp)
    if info is None:
        return f"daemon: not running (queued jobs wait; start it with `vcd daemon {vp}`)"
    return (f"daemon: running (pid {info.get('pid', '?')}, host {info.get('host', '?')}, since "
            f"{since_text(info.get('started'))}, version {info.get('version', '?')}, "
            f"metrics {info.get('metrics_addr') or 'off'})")


def status_text(args) -> str:
    """``vcdctl status``'s text: daemon, scheduler, job counts per kind and state, back-off,
    collection."""
    from ..daemon.scheduler import collection_stats
    q = _queue(args)
    vp = _find_volpkg(args.volpkg)
    counts = q.counts()
    kinds = sorted({k for k, _ in counts})
    lines = [daemon_line(vp), f"volpkg: {vp}   scheduler: {'paused' if q.get_kv('paused', False) else 'running'}"]
    from ..daemon.backoff import KV_STATE, status_line
    growth = status_line(q.get_kv(KV_STATE), time.time())
    if growth:
        lines.append(growth)
    url = page_url(vp)
    if url:
        lines.append(f"status page: {url} (`vcdctl status --open`)")
    from ..daemon.diskspace import full_disks
    from ..formats.volpkg import state_dir
    for where, free in full_disks([state_dir(vp), vp / "paths"]):
        lines.append(f"disk full: {where} has {free // 1024} KiB free — the daemon pauses growth and its writes, "
                     "retries with back-off and resumes by itself once space is freed")
    from ..daemon.queue import STATES
    lines.append(f"{'KIND':10}" + "".join(f"{s:>10}" for s in STATES))
    for k in kinds:
        lines.append(f"{k:10}" + "".join(f"{counts.get((k, s), 0):>10}" for s in STATES))
    running = q.list(state="running", limit=20)
    if running:
        lines.append("running: " + ", ".join(f"#{r['id']} {r['kind']} {_pct(r['progress'])}" for r in running))
    from ..daemon.config import load_config, tgt_overlap_count
    try:
        cfg = load_config(vp)
    except VcdError:  # a broken vcd.toml: status still shows the collection, at VC3D's default target
        cfg = None
    tgt = tgt_overlap_count(cfg, vp)
    st = collection_stats(vp, tgt)
    lines.append(f"collection: {st['patches']} patches, {st['patch_area_cm2']:.3f} cm², "
                 f"density {st['density'] * 100:.0f}% of patches with >= {tgt} links, {st['traces']} traces")
    failed = q.list(state="failed", limit=3)
    for r in failed:
        lines.append(f"last error #{r['id']} {r['kind']}: {(r['error'] or '')[:100]}")
    return "\n".join(lines)


def page_url(vp: Path) -> str | None:
    """The status page's URL (``http://<metrics addr>/``, :mod:`vcd.daemon.status_page`) of the daemon
    running on ``vp``, from its lock sidecar; None when no daemon runs or its metrics server is off."""
    from ..daemon.lock import running_daemon
    info = running_daemon(vp)
    addr = (info or {}).get("metrics_addr")
    if not addr:
        return None
    host, port = addr.rsplit(":", 1)
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"http://{host}:{port}/"


def _has_display() -> bool:
    """A graphical browser can open: macOS, Windows or an X/Wayland display (never a console browser,
    which would take over the terminal)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_status(args) -> int:
    """``vcdctl status``: print :func:`status_text` (``--open``: the status page in a browser)."""
    if getattr(args, "open", False):
        vp = _find_volpkg(args.volpkg)
        url = page_url(vp)
        if url is None:
            raise InputError(vp, "no daemon with a metrics address runs on this volpkg, so no status page is served",
                             f"start it with `vcd daemon {vp}` (the page is at http://<--metrics-addr>/)")
        print(url)
        if _has_display():
            import webbrowser
            webbrowser.open(url)
        return 0
    print(status_text(args))
    return 0


def cmd_repair(args) -> int:
    """Move a damaged ``.vcd/vcd.sqlite`` aside and rebuild the queue (:func:`vcd.daemon.repair.rebuild_state`)."""
    from ..daemon.repair import rebuild_state
    r = rebuild_state(_find_volpkg(args.volpkg))
    where = f"moved the old database aside to {r['moved_to']}" if r["moved_to"] else "no database to move aside"
    print(f"{where}; rebuilt the queue from paths/ and traces/: {r['surfaces']} surfaces scanned, "
          f"{r['jobs']} jobs queued (the daemon runs them when it starts)")
    return 0


def _pct(progress) -> str:
    """A job's progress as ``41%``, or ``?`` when the job reports no target (a negative fraction)."""
    return "?" if progress is None or progress < 0 else f"{progress * 100:.0f}%"


def rates_text(q, window_s: float, now: float) -> str:
    """``rates (last 60 s): expand 0.12 jobs/s (7 done, 1 failed), ...`` — finished jobs per second
    and kind over the last ``window_s`` seconds."""
    fin = q.finished_since(now - window_s)
    if not fin:
        return f"rates (last {window_s:g} s): nothing finished"
    parts = []
    for kind in sorted(fin):
        n = sum(fin[kind].values())
        detail = ", ".join(f"{c} {s}" for s, c in sorted(fin[kind].items()))
        parts.append(f"{kind} {n / window_s:.2g} jobs/s ({detail})")
    return f"rates (last {window_s:g} s): " + "; ".join(parts)


def watch_text(args, now: float) -> str:
    """What ``vcdctl watch`` shows: :func:`status_text`, the finished-job rates per kind, and each
    running job's own progress message (e.g. a trace's corners and corners/s)."""
    q = _queue(args)
    lines = [status_text(args), rates_text(q, args.window, now)]
    for r in q.list(state="running", limit=20):
        lines.append(f"  #{r['id']} {r['kind']:8} {_pct(r['progress']):>4}  {(r['message'] or '')[:100]}")
    return "\n".join(lines)


def cmd_watch(args) -> int:
    """Refresh :func:`watch_text` every ``--interval`` seconds until Ctrl-C (exit 130, no traceback)."""
    try:
        while True:
            text = watch_text(args, time.time())
            if args.once:
                print(text, flush=True)
                return 0
            head = f"vcdctl watch: every {args.interval:g} s, Ctrl-C to stop   {_ts(time.time())}"
            print("\x1b[2J\x1b[H" + head + "\n" + text, flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130


_XYZ = re.compile(r"[\[(]\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*[\])]")
_BARE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)[\s,]+(-?\d+(?:\.\d+)?)[\s,]+(-?\d+(?:\.\d+)?)\s*$")


def parse_points(lines) -> tuple[list[tuple[float, float, float]], list[str]]:
    """Points from text pasted out of VC3D's terminal (anything containing ``[x, y, z]``) or bare
    ``X Y Z`` lines; returns (points, malformed lines)."""
    pts, bad = [], []
    for line in lines:
        if not line.strip():
            continue
        m = _XYZ.search(line) or _BARE.match(line)
        if m:
            pts.append(tuple(float(v) for v in m.groups()))
        else:
            bad.append(line.rstrip("\n"))
    return pts, bad


def cmd_seed(args) -> int:
    """Queue explicit seeds at each point and at ±offset voxels in x (the tutorial's script)."""
    if args.xyz:
        if len(args.xyz) % 3:
            raise InputError(None, "give points as X Y Z triples", "e.g. vcdctl seed 3200 2400 5260")
        lines = [" ".join(args.xyz[i:i + 3]) for i in range(0, len(args.xyz), 3)]
    else:
        lines = sys.stdin.readlines()
    pts, bad = parse_points(lines)
    for b in bad:
        print(f"skipped (no [x, y, z] found): {b}", file=sys.stderr)
    vp = _find_volpkg(args.volpkg)
    from .. import jobs
    from ..daemon.config import job_params, load_config
    from ..daemon.service import prediction_volume
    from ..jobs import expand, seed
    cfg = load_config(vp)
    q = _queue(args)
    volume, paths = str(prediction_volume(vp, cfg)), str(vp / "paths")
    raw = job_params(cfg, vp, "seed")
    ids = []
    for x, y, z in pts:  # the params the daemon's own seed / expand jobs get (the kinds' params_for)
        for dx in (0.0, -args.offset, args.offset) if args.offset else (0.0,):
            ids.append(jobs.submit(q, "seed", seed.params_for(raw, volume, paths, seed_point=[x + dx, y, z]),
                                   by_user=True))
    if args.then_expand:
        eparams = expand.params_for(job_params(cfg, vp, "expand"), volume, paths)
        for _ in pts:
            ids.append(jobs.submit(q, "expand", eparams, by_user=True))
    print(f"queued {len(ids)} jobs for {len(pts)} points: {' '.join(map(str, ids))}")
    return 0 if pts or not bad else 1


SUBMIT_EPILOG = """\
required keys per kind (filled from the volpkg where shown; every other key has a default):
  trace    seed (seed patch directory)      volume, src_dir (paths/), tgt_dir (traces/) from the volpkg;
           plus any vc_grow_seg_from_segments key, e.g. src_step (must equal the patches' step_size)
  seed     -                                volume, paths and seed.json / vcd.toml params from the volpkg;
           optional seed_point [x, y, z] voxels
  expand   -                                as seed (expand.json)
  overlap  paths, segment (a patch name in paths/)
  retrace  trace (trace directory)
  winding  trace
  render   trace (or segment); optional volume, out, scale, group, layers
  fuse     params (FillParams keys), inputs [[trace, winding, weight], ...]; optional out_dir
  sleep    -                                optional seconds, marker (diagnostics)
example (trace.json holds {"seed": "paths/auto_grown_...", "src_step": 20, "step": 10}):
  vcdctl submit trace --params trace.json
"""


def kind_help(kind: str) -> str:
    """KIND's params: the job's own definition (``SPEC.describe()``) when it has one, else its docstring."""
    import importlib
    from ..jobs import KIND_MODULES
    if kind not in KIND_MODULES:
        raise InputError(None, f"unknown job kind {kind!r}", f"use one of {sorted(KIND_MODULES)}")
    mod = KIND_MODULES[kind]
    mod = importlib.import_module(mod) if isinstance(mod, str) else mod
    spec = getattr(mod, "SPEC", None)
    if spec is not None and hasattr(spec, "describe"):
        return spec.describe()
    text = (mod.__doc__ or f"job kind {kind!r}").strip()
    tool = _TOOL_PARAMS.get(kind)
    if tool:
        import dataclasses
        cls = getattr(importlib.import_module(tool[0]), tool[1])
        text += f"\n  plus every {tool[1]} key: " + ", ".join(f"{f.name}={getattr(cls(), f.name)!r}"
                                                             for f in dataclasses.fields(cls))
    return text


#: the tool params a job kind embeds (listed by ``vcdctl submit KIND --help`` when the kind has no SPEC)
_TOOL_PARAMS = {"trace": ("vcd.trace.params", "TraceParams"), "seed": ("vcd.grow.params", "GrowParams"),
                "expand": ("vcd.grow.params", "GrowParams")}


class _SubmitHelp(argparse.Action):
    """``-h`` after ``submit``: the general help, plus KIND's own params when KIND came first."""

    def __call__(self, parser, namespace, values, option_string=None):
        kind = getattr(namespace, "kind", None)
        if kind:
            text = kind_help(kind)
            print(f"usage: vcdctl submit {kind} [--params FILE] [--param KEY=VALUE ...] [--priority N]\n")
            print(text)
        else:
            parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``vcdctl`` argument parser."""
    ap = argparse.ArgumentParser(prog="vcdctl", description="queue and inspect vcd jobs")
    ap.add_argument("--volpkg", help="volpkg directory (default: $VCD_VOLPKG or the one containing cwd)")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    p = sub.add_parser("submit", help="queue a job", add_help=False, epilog=SUBMIT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Queue a job of KIND with its params (a JSON file and/or key=value pairs; "
                                   "--param wins). Relative paths in params are taken from the current "
                                   "directory, not the daemon's. `vcdctl submit KIND --help` lists KIND's params.")
    p.add_argument("-h", "--help", action=_SubmitHelp, nargs=0, help="show this help (with KIND: its params)")
    p.add_argument("kind", metavar="KIND")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="key=value (JSON values allowed)")
    p.add_argument("--params", metavar="FILE", help="params JSON file (an object of key: value)")
    p.add_argument("--priority", type=int, default=None,
                   help="queue priority (default: the kind's own, raised for jobs a person asks for)")
    p.set_defaults(func=cmd_submit)
    p = sub.add_parser("ls", help="list jobs")
    p.add_argument("--state")
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_ls)
    for name, fn, h in (("show", cmd_show, "show a job with its log tail"), ("cancel", cmd_cancel, "cancel a job"),
                        ("retry", cmd_retry, "retry a failed/cancelled job")):
        p = sub.add_parser(name, help=h)
        p.add_argument("id", type=int)
        p.set_defaults(func=fn)
    for name in ("pause", "resume"):
        p = sub.add_parser(name, help=f"{name} the scheduler's automatic seeding/expansion")
        p.set_defaults(func=cmd_pause)
    p = sub.add_parser("status", help="queue summary, running jobs, collection progress, last errors")
    p.add_argument("--open", action="store_true", help="print the daemon's status page URL (and open it in a "
                   "browser where there is a display)")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("progress", help="alias of status")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("repair", help="move a damaged .vcd/vcd.sqlite aside (kept) and rebuild the queue from "
                                      "paths/ and traces/ (daemon stopped)")
    p.set_defaults(func=cmd_repair)
    p = sub.add_parser("watch", help="live status view with finished jobs per second and kind (Ctrl-C exits)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--window", type=float, default=60.0, help="rates over the last this many seconds")
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("seed", help="queue explicit seeds from pasted VC3D lines or X Y Z args")
    p.add_argument("xyz", nargs="*")
    p.add_argument("--offset", type=float, default=30.0, help="also seed at x ± offset voxels (0 = off)")
    p.add_argument("--then-expand", action="store_true")
    p.set_defaults(func=cmd_seed)
    return ap


def main(argv=None) -> int:
    """``vcdctl``: :func:`vcd.cli.main.dispatch` under :func:`vcd.cli.main.guarded`, as ``vcd`` (exit 1
    with one ``error:`` line, 130 on Ctrl-C, 141 silently on a closed pipe)."""
    from .main import dispatch, guarded
    return guarded(lambda: dispatch(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
