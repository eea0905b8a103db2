"""Job kinds: plain functions ``run(params: dict, ctx: JobContext) -> dict`` — params in, files out.

A job kind runs the same in the foreground CLI, a daemon pool worker or a Dask worker. It never
parses argv and knows nothing of the queue. Each kind lives in its own module ``vcd.jobs.<kind>``
exposing ``KIND``, a typed ``Params`` dataclass, ``SPEC`` (:class:`~vcd.jobs.spec.JobSpec`: priority,
dedup key, retry policy, which params are paths) and ``run``; :data:`KIND_MODULES` is the registry.
Kind modules import their algorithms inside ``run``, so :func:`submit` (daemon, ``vcdctl``) stays
light and a worker only compiles the kernels it needs.

:func:`submit` is the one way jobs are queued: it validates the params against the kind's ``Params``
and takes priority, dedup key and attempts from the kind's ``SPEC``.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, VcdError
from ..formats.paramkeys import check_size

#: kind -> module. A kind is listed here when its algorithm has landed.
KIND_MODULES: dict[str, str] = {
    "seed": "vcd.jobs.seed",
    "expand": "vcd.jobs.expand",
    "overlap": "vcd.jobs.overlap",
    "trace": "vcd.jobs.trace",
    "retrace": "vcd.jobs.retrace",
    "winding": "vcd.jobs.winding",
    "fuse": "vcd.jobs.fuse",
    "gate": "vcd.jobs.gate",
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
        """Raise :class:`JobCancelled` if cancellation was asked for."""
        if self.cancelled_cb is not None and self.cancelled_cb():
            raise JobCancelled(f"job {self.job_id} cancelled")

    def warn(self, message: str) -> None:
        """A warning line: to the job's log, or stderr in a foreground run."""
        if self.log is not None:
            self.log.warning(message)
        else:
            print(f"warning: {message}", file=sys.stderr, flush=True)


def get_job(kind: str) -> Callable[[dict, JobContext], dict]:
    """The ``run`` function of a job kind (imports its module); an unknown kind raises InputError."""
    if kind not in KIND_MODULES:
        raise InputError(None, f"unknown job kind {kind!r}", f"use one of {sorted(KIND_MODULES)}")
    return importlib.import_module(KIND_MODULES[kind]).run


def get_spec(kind: str):
    """The :class:`~vcd.jobs.spec.JobSpec` of a job kind; an unknown kind raises InputError."""
    if kind not in KIND_MODULES:
        raise InputError(None, f"unknown job kind {kind!r}", f"use one of {sorted(KIND_MODULES)}")
    return importlib.import_module(KIND_MODULES[kind]).SPEC


def path_keys() -> frozenset[str]:
    """Keys that name files or directories in any job kind's params (derived from the ``Params``)."""
    return frozenset().union(*(get_spec(k).path_keys() for k in KIND_MODULES))


def __getattr__(name: str):
    if name == "PATH_KEYS":  #: job params that name files or directories (a daemon job may only touch its volpkg)
        return path_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def submit(queue, kind: str, params: dict | Any, *, priority: int | None = None, by_user: bool = False,
           max_attempts: int | None = None) -> int | None:
    """Validate params and queue one job with its kind's policy — the one way a job is queued.

    Parameters
    ----------
    queue : vcd.daemon.queue.JobQueue
        The queue.
    kind : str
        A job kind of :data:`KIND_MODULES`.
    params : dict or the kind's Params
        JSON-shaped params (checked: missing, unknown or mistyped keys raise) or a ``Params`` value.
    priority : int, optional
        Override the kind's priority (default: ``SPEC.priority``, + :data:`~vcd.jobs.spec.USER_BOOST`
        when ``by_user``).
    by_user : bool
        Queued by a person (``vcdctl``, ``vcd demo``): runs before the daemon's own jobs.
    max_attempts : int, optional
        Runs before the job stays failed; 0 or None = the kind's ``Retry`` (the daemon passes
        ``[daemon] max_attempts``).

    Returns
    -------
    int or None
        The job id, or the id of the already-queued job with the same dedup key.

    Raises
    ------
    InputError
        Unknown kind, or params that do not validate (the message names the key).
    """
    spec = get_spec(kind)
    if isinstance(params, dict):
        check_size(params, f"{kind} job")  # one param must not fill the disk (issue 31)
    p = spec.parse(params)
    return queue.submit(kind, spec.dump(p), priority=spec.priority_for(by_user) if priority is None else priority,
                        dedup_key=spec.dedup_key(p), max_attempts=max_attempts or spec.retry.max_attempts)


def describe(kind: str) -> str:
    """Help text of a job kind's params and policy (for ``vcdctl submit KIND --help``)."""
    return get_spec(kind).describe()


def wall_seconds(kind: str, overrides=None) -> float:
    """The wall-time limit of a job of ``kind`` in seconds: ``overrides[kind]`` (the ``[wall_seconds]``
    table of vcd.toml) or the kind's :attr:`~vcd.jobs.spec.JobSpec.wall_seconds`."""
    from .spec import JobSpec
    if overrides and kind in overrides:
        return float(overrides[kind])
    return get_spec(kind).wall_seconds if kind in KIND_MODULES else JobSpec.wall_seconds


def retry_policy(kind: str):
    """The kind's :class:`~vcd.jobs.spec.Retry` (the default one for kinds no longer registered)."""
    from .spec import Retry
    return get_spec(kind).retry if kind in KIND_MODULES else Retry()


def _path_values(params: dict, keys: frozenset[str]):
    for key in keys & set(params):
        stack = [params[key]]
        while stack:
            v = stack.pop()
            if isinstance(v, (list, tuple)):
                stack.extend(v)
            elif isinstance(v, str) and not is_number(v):
                yield key, v


def is_number(text: str) -> bool:
    """True when ``text`` parses as a float ("12", "-3.5", "1e3"): a param value that is a number
    written as a string, never a path (used here and by ``vcdctl``'s path resolution)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def confine_params(params: dict, volpkg: str | os.PathLike, kind: str | None = None) -> None:
    """Reject a daemon job whose params point outside its volpkg.

    ``..`` components, absolute paths elsewhere, or symlinks that resolve elsewhere are refused
    (relative paths are taken from the volpkg). Volumes under ``volumes/`` may be symlinks to another
    disk, as VC3D users keep them.

    Parameters
    ----------
    params : dict
        The job's JSON params.
    volpkg : str or os.PathLike
        The volpkg the daemon serves.
    kind : str, optional
        Check this kind's path params (every kind's when None or unknown).

    Raises
    ------
    InputError
        Naming the param and the path.
    """
    root = Path(volpkg).resolve()
    keys = get_spec(kind).path_keys() if kind in KIND_MODULES else path_keys()
    for key, value in _path_values(params, keys):
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
    """Run one job in this process.

    Parameters
    ----------
    kind : str
        A job kind of :data:`KIND_MODULES`.
    params : dict
        The job's JSON params.
    ctx : JobContext, optional
        Progress, cancellation and log; with ``ctx.volpkg`` set (daemon and Dask workers) the params
        must stay inside that volpkg (:func:`confine_params`).

    Returns
    -------
    dict
        The kind's result (JSON-shaped).
    """
    ctx = ctx or JobContext()
    if ctx.volpkg is not None:
        confine_params(params, ctx.volpkg, kind)
    return get_job(kind)(dict(params), ctx)


@dataclass
class Outcome:
    """How one run of a job ended — what every executor records in the queue.

    ``state``: ``done``, ``failed`` or ``cancelled``; ``result``: the job's result dict (done);
    ``error``: one line (failed/cancelled); ``retry``: whether a failure may be retried (never for
    input errors, :class:`~vcd.errors.VcdError`); ``traceback``: of an unexpected exception."""

    state: str
    result: dict | None = None
    error: str = ""
    retry: bool = False
    traceback: str = ""


def execute(kind: str, params: dict, ctx: JobContext | None = None) -> Outcome:
    """Run one job (:func:`run_job`) and map how it ended to an :class:`Outcome`: the one place where
    exceptions become outcomes, shared by the local pool and the Dask executor.

    Parameters
    ----------
    kind : str
        A job kind of :data:`KIND_MODULES`.
    params : dict
        The job's JSON params (anything else fails the job without retry).
    ctx : JobContext, optional
        As for :func:`run_job`.

    Returns
    -------
    Outcome
        ``done`` with the result dict, which gets ``cpu_seconds`` (CPU s of this process while the job
        ran, its numba threads included); ``cancelled``; or ``failed`` — never retried for a
        :class:`~vcd.errors.VcdError` (the user's input), retried with the traceback otherwise.
    """
    if not isinstance(params, dict):  # the queue row's params were not a JSON object: no retry helps
        return Outcome("failed", error=f"{kind} job params are not a valid JSON object; submit the job again "
                       "with `vcdctl submit`", retry=False)
    c0 = time.process_time()
    try:
        result = run_job(kind, params, ctx)
        if isinstance(result, dict):
            result.setdefault("cpu_seconds", round(time.process_time() - c0, 3))
        return Outcome("done", result=result)
    except JobCancelled:
        return Outcome("cancelled", error="cancelled while running")
    except VcdError as exc:  # the user's input: retrying will not help
        return Outcome("failed", error=one_line(exc.message), retry=False)
    except Exception as exc:
        return Outcome("failed", error=one_line(f"{type(exc).__name__}: {exc}"), retry=True,
                       traceback=traceback.format_exc()[-ERROR_CHARS:])


#: most characters of a job's stored error line and traceback tail
ERROR_CHARS = 2000


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (what a failed job stores and logs)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 30] + f"… ({len(text)} characters)"
