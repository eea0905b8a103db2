"""``vcd daemon VOLPKG [--config FILE] [--metrics-addr HOST:PORT]``: one daemon per volpkg (a second
one exits 1 naming the first); Ctrl-C stops it cleanly and exits 130."""

from __future__ import annotations

import sys


def _daemon(args) -> int:
    from ..daemon.config import load_config
    from ..daemon.service import run_daemon
    over: dict = {"daemon": {}}
    if args.metrics_addr is not None:
        over["daemon"]["metrics_addr"] = args.metrics_addr
    if args.workers is not None:
        over["daemon"]["workers"] = args.workers
    if args.log_format is not None:
        over["daemon"]["log_format"] = args.log_format
    cfg = load_config(args.volpkg, args.config, over)
    rc = run_daemon(args.volpkg, cfg)
    if rc == 130:  # Ctrl-C: stopped cleanly (jobs finished or requeued), reported like any interrupted command
        print("interrupted", file=sys.stderr)
    return rc


def register(sub) -> None:
    """Add the ``vcd daemon`` subcommand to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("daemon", help="run the daemon on a volpkg (watcher, queue, workers, scheduler, metrics)")
    p.add_argument("volpkg")
    p.add_argument("--config", help="TOML config (default: $VCD_CONFIG or VOLPKG/vcd.toml)")
    p.add_argument("--metrics-addr", help="HOST:PORT for /metrics and the status page at / (default 127.0.0.1:9464; '' disables)")
    p.add_argument("--workers", type=int)
    p.add_argument("--log-format", choices=["json", "console", "auto"])
    p.set_defaults(func=_daemon)
