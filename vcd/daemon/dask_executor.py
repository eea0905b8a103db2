"""The ``dask`` executor: the same jobs on a Dask distributed cluster.

SQLite stays the single source of truth. The daemon claims jobs from the queue as usual, submits
each as a Dask task (:func:`vcd.jobs.execute` — the function the local workers call, so the same
exceptions become the same outcomes), renews the job's lease while its future is pending and
records the :class:`~vcd.jobs.Outcome` with :func:`vcd.daemon.pool.record_outcome` (retry rules,
traceback in the job log). Progress and cancellation travel through two ``distributed.Variable``s
per job (``vcd-progress-<id>``, ``vcd-cancel-<id>``), polled by the job at most once a second. If a
Dask worker dies, the scheduler reruns the task elsewhere; if the whole cluster or the daemon is
lost, lease expiry returns the job to the queue. Outputs are staged and renamed atomically under
unique names, so a rerun never leaves a half-written or duplicate surface.

Workers need the same filesystem view of the volpkg (and of the distance-field cache, which is
safe to fill from several machines: content-keyed files written by rename) — see docs/capacity.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config
from .pool import record_outcome
from .queue import JobQueue


def _variables(job_id: int, client=None):
    """The job's (progress, cancel) ``distributed.Variable``s, or None outside a Dask worker/client."""
    try:
        from distributed import Variable, get_client
        client = client or get_client()
    except (ImportError, ValueError):
        return None
    return Variable(f"vcd-progress-{job_id}", client), Variable(f"vcd-cancel-{job_id}", client)


class _Channel:
    """The job's side of its progress and cancel variables (a network call at most once a second each)."""

    def __init__(self, job_id: int):
        self.vars = _variables(job_id)
        self._sent = self._polled = 0.0
        self._cancel = False

    def progress(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if self.vars is not None and (now - self._sent >= 1.0 or fraction >= 1.0):
            self._sent = now
            try:
                self.vars[0].set([float(fraction), message[:500]])
            except Exception:  # progress is a convenience; never fail a job for it
                pass

    def cancelled(self) -> bool:
        now = time.monotonic()
        if self.vars is not None and not self._cancel and now - self._polled >= 1.0:
            self._polled = now
            try:
                self._cancel = bool(self.vars[1].get(timeout=1))
            except Exception:
                pass
        return self._cancel


def run_job_remote(kind: str, params: dict, volpkg: str, job_id: int):
    """Executed on a Dask worker: :func:`vcd.jobs.execute` with progress and cancellation wired to
    the daemon; returns the :class:`~vcd.jobs.Outcome`."""
    from ..jobs import JobContext, execute
    ch = _Channel(job_id)
    return execute(kind, params, JobContext(volpkg=Path(volpkg), job_id=job_id, progress_cb=ch.progress,
                                            cancelled_cb=ch.cancelled))


class DaskPool:
    """:class:`~vcd.daemon.pool.Executor` backed by a Dask cluster."""

    def __init__(self, queue_path: Path, volpkg: Path, cfg: Config, log):
        self.queue_path = queue_path
        self.volpkg = str(volpkg)
        self.cfg = cfg
        self.log = log
        self.address = cfg.daemon.dask_scheduler
        self.client = None
        self.futures: dict[int, object] = {}
        self.jobs: dict[int, dict] = {}     #: job id -> its claimed row
        self.vars: dict[int, tuple] = {}    #: job id -> (progress, cancel) Variables
        self.capacity = int(cfg.daemon.workers)
        self.stopping = False

    def start(self) -> None:
        from distributed import Client
        self.client = Client(self.address, timeout=30)
        n = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        self.capacity = max(self.capacity, n)
        self.log.info("dask_connected", scheduler=self.address, threads=n)

    def supervise(self, q: JobQueue) -> None:
        lease = float(self.cfg.daemon.lease_seconds)
        for jid, fut in list(self.futures.items()):
            if fut.done():
                self._finish(q, jid, fut)
            elif q.heartbeat(jid, lease, *self._progress(jid)):  # cancel requested
                self._cancel(q, jid, fut)
        if self.stopping:
            return
        while len(self.futures) < self.capacity:
            job = q.claim("dask", lease_s=lease, kind_limits=dict(self.cfg.concurrency))
            if job is None:
                break
            self._submit(job)

    def _submit(self, job: dict) -> None:
        jid = job["id"]
        self.vars[jid] = _variables(jid, self.client)
        if self.vars[jid] is not None:  # both set now, so reading them never waits
            self.vars[jid][0].set([0.0, ""])
            self.vars[jid][1].set(False)
        self.futures[jid] = self.client.submit(run_job_remote, job["kind"], job["params"], self.volpkg, jid,
                                               key=f"vcd-job-{jid}-{job['attempts']}", pure=False)
        self.jobs[jid] = job
        self.log.info("job_submitted", job_id=jid, kind=job["kind"])

    def _progress(self, jid: int) -> tuple[float | None, str | None]:
        """The job's last reported (fraction, message), or (None, None) before its first report."""
        v = self.vars.get(jid)
        if v is None:
            return None, None
        try:
            frac, msg = v[0].get(timeout=1)
        except Exception:  # the scheduler is unreachable: the lease still gets renewed
            return None, None
        return float(frac), str(msg)

    def _finish(self, q: JobQueue, jid: int, fut) -> None:
        from ..jobs import Outcome
        job = self._forget(jid)
        try:
            outcome = fut.result()
        except Exception as exc:  # KilledWorker after repeated deaths, or a crash outside the job
            outcome = Outcome("failed", error=f"{type(exc).__name__}: {exc}", retry=True)
        record_outcome(q, job, outcome, self.log.bind(job_id=jid, kind=job["kind"]))

    def _cancel(self, q: JobQueue, jid: int, fut) -> None:
        v = self.vars.pop(jid, None)
        if v is not None:  # kept (not deleted): a running job stops at its next check
            v[1].set(True)
            v[0].delete()
        fut.cancel()
        self._forget(jid)
        q.cancelled(jid)

    def _forget(self, jid: int) -> dict:
        """Drop the job's future and variables; returns its row."""
        self.futures.pop(jid, None)
        for var in self.vars.pop(jid, None) or ():
            try:
                var.delete()
            except Exception:
                pass
        return self.jobs.pop(jid, {"id": jid, "kind": ""})

    def busy(self, q: JobQueue) -> int:
        return len(self.futures)

    def shutdown(self, q: JobQueue, timeout: float) -> None:
        self.stopping = True
        deadline = time.monotonic() + timeout
        while self.futures and time.monotonic() < deadline:
            self.supervise(q)
            time.sleep(0.2)
        for jid, fut in list(self.futures.items()):
            fut.cancel()
            self._forget(jid)
            q.requeue(jid, "requeued at daemon shutdown")
        if self.client is not None:
            self.client.close()
