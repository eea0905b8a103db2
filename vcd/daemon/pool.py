"""Executors: where claimed jobs run.

Every executor implements :class:`Executor` (``start``, ``supervise``, ``busy``, ``shutdown``), runs
jobs through :func:`vcd.jobs.execute` and records each :class:`~vcd.jobs.Outcome` with
:func:`record_outcome` — so retry rules, tracebacks and logging are the same whichever runs the job.

``LocalPool`` keeps ``workers`` spawned processes. Each worker claims jobs straight from SQLite
(atomic claim), runs ``vcd.jobs.run_job`` — the same function the foreground CLI calls — and renews
its lease from a heartbeat thread that also relays progress and cancellation. A worker whose
parent daemon dies finishes its current job and exits (its lease keeps the job from running
twice); the daemon restarts dead workers and requeues their jobs at once.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

from .config import Config
from .diskspace import wait_out
from .queue import JobQueue


class Executor(Protocol):
    """Where claimed jobs run (:class:`LocalPool`, :class:`vcd.daemon.dask_executor.DaskPool`)."""

    def start(self) -> None: ...

    def supervise(self, q: JobQueue) -> None:
        """Called about once a second by the daemon: keep workers alive, collect finished jobs."""

    def busy(self, q: JobQueue) -> int:
        """Jobs running now."""

    def shutdown(self, q: JobQueue, timeout: float) -> None:
        """Stop claiming; let running jobs finish up to ``timeout`` s; requeue the rest."""


def record_outcome(q: JobQueue, job: dict, outcome, log, seconds: float | None = None) -> str:
    """Record how a run of ``job`` ended (a :class:`vcd.jobs.Outcome`) and log it; returns the job's
    new state. Failures are retried after the kind's back-off unless the outcome forbids it."""
    from ..jobs import retry_policy
    jid = job["id"]
    if outcome.state == "done":
        q.complete(jid, outcome.result)
        log.info("job_done", seconds=seconds, result=outcome.result)
        return "done"
    if outcome.state == "cancelled":
        q.cancelled(jid, outcome.error or "cancelled while running")
        log.info("job_cancelled")
        return "cancelled"
    if outcome.traceback:
        q.log(jid, outcome.traceback)
    st = q.fail(jid, outcome.error, retry=outcome.retry, backoff_s=retry_policy(job["kind"]).backoff_s)
    (log.error if outcome.retry else log.warning)("job_failed", error=outcome.error, now=st)
    return st


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the daemon dies (Linux ``PR_SET_PDEATHSIG``): a worker
    orphaned by a kill -9 of the daemon must not finish its job while the restarted daemon runs the
    requeued copy. Elsewhere the heartbeat thread's parent check (:func:`_run_one`) does it."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the daemon died before the request above
        os._exit(1)


def _orphaned(parent_pid: int | None) -> bool:
    """True once the daemon that started this worker is gone."""
    return parent_pid is not None and os.getppid() != parent_pid


def _run_one(q: JobQueue, job: dict, volpkg: str, lease_s: float, log, parent_pid: int | None = None) -> None:
    from ..jobs import JobContext, execute

    state = {"progress": 0.0, "message": "", "cancel": False}
    done = threading.Event()

    def beat():
        # renews the lease every lease_s / 3 s; wakes at once when the job ends (it used to poll a flag
        # every 0.1 s, so every job, however short, cost its worker up to 0.1 s more)
        hq = None
        while not done.wait(max(1.0, lease_s / 3)):
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(1)  # orphaned: the daemon died; its successor reruns the job
            try:
                hq = hq or JobQueue(q.path)
                state["cancel"] = hq.heartbeat(job["id"], lease_s, state["progress"], state["message"]) or state["cancel"]
            except Exception:
                pass
        if hq is not None:
            hq.close()

    def progress(frac, msg):
        state["progress"], state["message"] = frac, msg

    jlog = log.bind(job_id=job["id"], kind=job["kind"])
    ctx = JobContext(volpkg=Path(volpkg), job_id=job["id"], progress_cb=progress,
                     cancelled_cb=lambda: state["cancel"], log=jlog)
    hb = threading.Thread(target=beat, daemon=True)
    hb.start()
    t0 = time.monotonic()
    jlog.info("job_started", attempt=job["attempts"])
    try:
        outcome = execute(job["kind"], job["params"], ctx)  # a done job's result has its cpu_seconds
        seconds = round(time.monotonic() - t0, 3)
        # a full disk: keep the outcome and retry until it is recorded (the lease is renewed meanwhile)
        wait_out(lambda: record_outcome(q, job, outcome, jlog, seconds=seconds), stop=lambda: _orphaned(parent_pid))
    finally:
        done.set()
        hb.join(timeout=5)


def worker_main(queue_path: str, volpkg: str, name: str, stop, kind_limits: dict, lease_s: float,
                log_format: str, thread_limit: int, parent_pid: int) -> None:
    """Entry point of a spawned worker process."""
    from . import logs
    logs.configure(log_format)
    log = logs.get_logger(worker=name)
    if thread_limit:
        os.environ["NUMBA_NUM_THREADS"] = str(thread_limit)
    _die_with_parent(parent_pid)
    q = JobQueue(queue_path)
    while not stop.is_set() and os.getppid() == parent_pid:
        # a full disk: claims wait with back-off (the daemon says so once), the worker stays
        job = wait_out(lambda: q.claim(name, lease_s=lease_s, kind_limits=kind_limits),
                       stop=lambda: stop.is_set() or _orphaned(parent_pid))
        if job is None:
            time.sleep(0.1)
            continue
        _run_one(q, job, volpkg, lease_s, log, parent_pid)
    q.close()


class LocalPool:
    """A supervised set of worker processes on this machine."""

    def __init__(self, queue_path: Path, volpkg: Path, cfg: Config, log):
        self.queue_path = str(queue_path)
        self.volpkg = str(volpkg)
        self.cfg = cfg
        self.log = log
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.procs: dict[str, mp.Process] = {}
        self.n = int(cfg.daemon.workers)
        self._serial = 0

    def _spawn(self) -> None:
        self._serial += 1
        name = f"w{self._serial}-{os.getpid()}"
        d = self.cfg.daemon
        p = self.ctx.Process(target=worker_main, name=name, daemon=False, args=(
            self.queue_path, self.volpkg, name, self.stop_event, dict(self.cfg.concurrency),
            float(d.lease_seconds), d.log_format, int(d.thread_limit), os.getpid()))
        p.start()
        self.procs[name] = p

    def start(self) -> None:
        for _ in range(self.n):
            self._spawn()

    def supervise(self, q: JobQueue) -> None:
        """Restart dead workers; requeue the jobs they held (no need to wait for the lease); stop jobs
        past their wall-time limit."""
        if self.stop_event.is_set():
            return
        self._enforce_wall_time(q)
        for name, p in list(self.procs.items()):
            if not p.is_alive():
                p.join(timeout=0.1)
                del self.procs[name]
                for jid in q.running_ids(name):
                    st = q.fail(jid, f"worker {name} died (exit code {p.exitcode})", retry=True, backoff_s=0.0)
                    self.log.warning("worker_died", worker=name, job_id=jid, exitcode=p.exitcode, now=st)
                self._spawn()

    def _enforce_wall_time(self, q: JobQueue) -> None:
        """A job running longer than its kind's wall-time limit (:func:`vcd.jobs.wall_seconds`): kill its
        worker, fail the job with one line (not retried: it would run as long again), start a new worker."""
        from ..jobs import wall_seconds
        now = time.time()
        for job in q.running_jobs(list(self.procs)):
            limit = wall_seconds(job["kind"], self.cfg.wall_seconds)
            if job["started"] is None or now - job["started"] <= limit:
                continue
            p = self.procs.pop(job["worker"])
            p.kill()
            p.join(timeout=5)
            q.fail(job["id"], f"{job['kind']} job exceeded its wall-time limit of {limit:g} s and was stopped "
                   f"(raise [wall_seconds] {job['kind']} in vcd.toml if it needs longer)", retry=False)
            self.log.warning("job_wall_time", job_id=job["id"], kind=job["kind"], limit_s=limit, worker=job["worker"])
            self._spawn()

    def busy(self, q: JobQueue) -> int:
        return q.running_count(list(self.procs))

    def shutdown(self, q: JobQueue, timeout: float) -> None:
        """Stop claiming; let running jobs finish up to ``timeout`` s; terminate and requeue the rest."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for name, p in self.procs.items():
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
                for jid in q.running_ids(name):
                    q.requeue(jid, "requeued at daemon shutdown")
                    self.log.info("job_requeued_at_shutdown", job_id=jid)
        self.procs.clear()
