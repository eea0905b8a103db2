"""Executors: where claimed jobs run.

``LocalPool`` keeps ``workers`` spawned processes. Each worker claims jobs straight from SQLite
(atomic claim), runs ``vcd.jobs.run_job`` — the same function the foreground CLI calls — and renews
its lease from a heartbeat thread that also relays progress and cancellation. A worker whose
parent daemon dies finishes its current job and exits (its lease keeps the job from running
twice); the daemon restarts dead workers and requeues their jobs at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from pathlib import Path

from .queue import JobQueue


def _run_one(q: JobQueue, job: dict, volpkg: str, lease_s: float, log) -> None:
    from ..errors import VcdError
    from ..jobs import JobCancelled, JobContext, retry_policy, run_job

    state = {"progress": 0.0, "message": "", "cancel": False}
    done = threading.Event()

    def beat():
        # renews the lease every lease_s / 3 s; wakes at once when the job ends (it used to poll a flag
        # every 0.1 s, so every job, however short, cost its worker up to 0.1 s more)
        hq = None
        while not done.wait(max(1.0, lease_s / 3)):
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
        result = run_job(job["kind"], job["params"], ctx)
        q.complete(job["id"], result)
        jlog.info("job_done", seconds=round(time.monotonic() - t0, 3), result=result)
    except JobCancelled:
        q.cancelled(job["id"])
        jlog.info("job_cancelled")
    except VcdError as exc:  # the user's input: retrying will not help
        q.fail(job["id"], exc.message, retry=False)
        jlog.warning("job_failed", error=exc.message)
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        q.log(job["id"], traceback.format_exc())
        st = q.fail(job["id"], err, retry=True, backoff_s=retry_policy(job["kind"]).backoff_s)
        jlog.error("job_failed", error=err, now=st)
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
    q = JobQueue(queue_path)
    while not stop.is_set() and os.getppid() == parent_pid:
        job = q.claim(name, lease_s=lease_s, kind_limits=kind_limits)
        if job is None:
            time.sleep(0.1)
            continue
        _run_one(q, job, volpkg, lease_s, log)
    q.close()


class LocalPool:
    """A supervised set of worker processes on this machine."""

    def __init__(self, queue_path: Path, volpkg: Path, cfg: dict, log):
        self.queue_path = str(queue_path)
        self.volpkg = str(volpkg)
        self.cfg = cfg
        self.log = log
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.procs: dict[str, mp.Process] = {}
        self.n = int(cfg["daemon"]["workers"])
        self._serial = 0

    def _spawn(self) -> None:
        self._serial += 1
        name = f"w{self._serial}-{os.getpid()}"
        d = self.cfg["daemon"]
        p = self.ctx.Process(target=worker_main, name=name, daemon=False, args=(
            self.queue_path, self.volpkg, name, self.stop_event, dict(self.cfg["concurrency"]),
            float(d["lease_seconds"]), d["log_format"], int(d["thread_limit"]), os.getpid()))
        p.start()
        self.procs[name] = p

    def start(self) -> None:
        for _ in range(self.n):
            self._spawn()

    def supervise(self, q: JobQueue) -> None:
        """Restart dead workers; requeue the jobs they held (no need to wait for the lease)."""
        if self.stop_event.is_set():
            return
        for name, p in list(self.procs.items()):
            if not p.is_alive():
                p.join(timeout=0.1)
                del self.procs[name]
                for jid in q.running_ids(name):
                    st = q.fail(jid, f"worker {name} died (exit code {p.exitcode})", retry=True, backoff_s=0.0)
                    self.log.warning("worker_died", worker=name, job_id=jid, exitcode=p.exitcode, now=st)
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
