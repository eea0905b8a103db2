"""Job kinds: plain functions ``run(params: dict, ctx: JobContext) -> dict`` — params in, files out.

A job kind runs the same in the foreground CLI, a daemon pool worker or a Dask worker. It never
parses argv and knows nothing of the queue. Each kind lives in its own module ``vcd.jobs.<kind>``
exposing ``KIND`` (str) and ``run``; :data:`KIND_MODULES` is the registry, imported lazily so a
worker only compiles the kernels it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

#: kind -> module. A kind is listed here when its algorithm has landed.
KIND_MODULES: dict[str, str] = {
    "seed": "vcd.jobs.seed",
    "expand": "vcd.jobs.expand",
    "overlap": "vcd.jobs.overlap",
    "trace": "vcd.jobs.trace",
    "retrace": "vcd.jobs.retrace",
    "winding": "vcd.jobs.winding",
    "fuse": "vcd.jobs.fuse",
    "render": "vcd.jobs.render",
    "sleep": "vcd.jobs.sleep",
}


class JobCancelled(Exception):
    """Raised inside a job when :meth:`JobContext.check_cancel` sees a cancel request."""


@dataclass
class JobContext:
    """What a running job may use besides its params.

    ``volpkg``: the volpkg directory (or None for foreground CLI runs on loose paths);
    ``progress(fraction, message)``: report progress (0..1); ``cancelled()``: poll for cancel;
    ``log``: a structlog-style logger (``log.info("event", key=value)``).
    """

    volpkg: Path | None = None
    job_id: int | None = None
    progress_cb: Callable[[float, str], None] | None = None
    cancelled_cb: Callable[[], bool] | None = None
    log: Any = None
    extra: dict = field(default_factory=dict)
    _last_progress: float = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        if self.progress_cb is not None:
            self.progress_cb(float(fraction), message)
            return
        now = time.monotonic()
        if now - self._last_progress > 1.0 or fraction >= 1.0:  # foreground: stderr, at most 1/s
            self._last_progress = now
            print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

    def check_cancel(self) -> None:
        if self.cancelled_cb is not None and self.cancelled_cb():
            raise JobCancelled(f"job {self.job_id} cancelled")

    def warn(self, message: str) -> None:
        if self.log is not None:
            self.log.warning(message)
        else:
            print(f"warning: {message}", file=sys.stderr, flush=True)


def available_kinds() -> list[str]:
    """Kinds whose module exists in this install."""
    out = []
    for kind, mod in KIND_MODULES.items():
        if importlib.util.find_spec(mod) is not None:
            out.append(kind)
    return out


def get_job(kind: str) -> Callable[[dict, JobContext], dict]:
    """The ``run`` function of a job kind (imports its module)."""
    if kind not in KIND_MODULES:
        raise KeyError(f"unknown job kind {kind!r}; known: {sorted(KIND_MODULES)}")
    module = importlib.import_module(KIND_MODULES[kind])
    return module.run


#: job params that name files or directories (a daemon job may only touch its own volpkg)
PATH_KEYS = frozenset({"volume", "paths", "src_dir", "tgt_dir", "seed", "segment", "trace", "out", "out_dir",
                       "marker", "cache_root", "volpkg", "inputs"})


def _path_values(params: dict):
    for key in PATH_KEYS & set(params):
        stack = [params[key]]
        while stack:
            v = stack.pop()
            if isinstance(v, (list, tuple)):
                stack.extend(v)
            elif isinstance(v, str) and not _is_number(v):
                yield key, v


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def confine_params(params: dict, volpkg: str | os.PathLike) -> None:
    """Reject a daemon job whose params point outside ``volpkg``: ``..`` components, absolute paths
    elsewhere, or symlinks that resolve elsewhere (relative paths are taken from the volpkg). Volumes
    under ``volumes/`` may be symlinks to another disk, as VC3D users keep them. Raises InputError."""
    root = Path(volpkg).resolve()
    for key, value in _path_values(params):
        path = Path(value)
        fix = "daemon jobs may only name files inside the volpkg; run the CLI for anything else"
        if ".." in path.parts:
            raise InputError(value, f"job param {key!r} contains '..'", fix)
        full = path if path.is_absolute() else root / path
        lexical = Path(os.path.normpath(full))
        if not lexical.is_relative_to(root):
            raise InputError(value, f"job param {key!r} points outside the volpkg {root}", fix)
        if key == "volume" and lexical.is_relative_to(root / "volumes"):
            continue
        if not full.resolve().is_relative_to(root):
            raise InputError(value, f"job param {key!r} resolves (through a symlink) outside the volpkg {root}", fix)


def run_job(kind: str, params: dict, ctx: JobContext | None = None) -> dict:
    """Run one job in this process and return its result dict. With ``ctx.volpkg`` set (daemon and
    Dask workers) the params must stay inside that volpkg (:func:`confine_params`)."""
    ctx = ctx or JobContext()
    if ctx.volpkg is not None:
        confine_params(params, ctx.volpkg)
    return get_job(kind)(dict(params), ctx)
