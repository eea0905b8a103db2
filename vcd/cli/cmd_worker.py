"""``vcd worker SCHEDULER [--nworkers N] [--nthreads T]``: start Dask workers for the ``dask`` executor
with numba caches warmed (runs ``dask worker ... --preload vcd.daemon.dask_preload``)."""

from __future__ import annotations

import os
import shutil
import sys


def _worker(a) -> int:
    exe = shutil.which("dask")
    cmd = [exe or sys.executable, *([] if exe else ["-m", "distributed.cli.dask_worker"]), a.scheduler,
           "--nworkers", str(a.nworkers), "--nthreads", str(a.nthreads), "--preload", "vcd.daemon.dask_preload"]
    if a.memory_limit:
        cmd += ["--memory-limit", a.memory_limit]
    print(" ".join(cmd), file=sys.stderr)
    os.execvp(cmd[0], cmd)
    return 0


def register(sub) -> None:
    """Add the ``vcd worker`` subcommand to ``sub`` (the ``vcd`` subparsers)."""
    p = sub.add_parser("worker", help="start Dask workers for executor = \"dask\" (numba caches warm)")
    p.add_argument("scheduler", help="tcp://host:8786")
    p.add_argument("--nworkers", type=int, default=os.cpu_count() or 1, help="worker processes (1 thread each is best)")
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--memory-limit", default="")
    p.set_defaults(func=_worker)
