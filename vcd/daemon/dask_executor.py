"""The ``dask`` executor: the same jobs on a Dask distributed cluster.

SQLite stays the single source of truth. The daemon claims jobs from the queue as usual, submits
each as a Dask task (``vcd.jobs.run_job`` — the function the CLI and local workers call), renews
the job's lease while its future is pending and records the result when it finishes. If a Dask
worker dies, the scheduler reruns the task elsewhere; if the whole cluster or the daemon is lost,
lease expiry returns the job to the queue. Outputs are staged and renamed atomically under unique
names, so a rerun never leaves a half-written or duplicate surface.

Workers need the same filesystem view of the volpkg (and of the distance-field cache, which is
safe to fill from several machines: content-keyed files written by rename) — see docs/capacity.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from .queue import JobQueue


def run_job_remote(kind: str, params: dict, volpkg: str, job_id: int) -> dict:
    """Executed on a Dask worker."""
    from ..errors import VcdError
    from ..jobs import JobContext, run_job
    try:
        return {"ok": True, "result": run_job(kind, params, JobContext(volpkg=Path(volpkg), job_id=job_id))}
    except VcdError as exc:  # the user's input: do not retry
        return {"ok": False, "error": exc.message, "retry": False}


class DaskPool:
    """Executor with the :class:`~vcd.daemon.pool.LocalPool` interface, backed by a Dask cluster."""

    def __init__(self, queue_path: Path, volpkg: Path, cfg: dict, log):
        self.queue_path = queue_path
        self.volpkg = str(volpkg)
        self.cfg = cfg
        self.log = log
        self.address = cfg["daemon"]["dask_scheduler"]
        self.client = None
        self.futures: dict[int, object] = {}
        self.kinds: dict[int, str] = {}  #: job id -> kind of the jobs submitted
        self.capacity = int(cfg["daemon"]["workers"])
        self.stopping = False

    def start(self) -> None:
        from distributed import Client
        self.client = Client(self.address, timeout=30)
        n = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        self.capacity = max(self.capacity, n)
        self.log.info("dask_connected", scheduler=self.address, threads=n)

    def supervise(self, q: JobQueue) -> None:
        lease = float(self.cfg["daemon"]["lease_seconds"])
        for jid, fut in list(self.futures.items()):
            if fut.done():
                del self.futures[jid]
                try:
                    out = fut.result()
                except Exception as exc:  # KilledWorker after repeated deaths, or a crash
                    st = q.fail(jid, f"{type(exc).__name__}: {exc}", retry=True, backoff_s=self._backoff(jid))
                    self.log.error("job_failed", job_id=jid, error=str(exc), now=st)
                    continue
                if out.get("ok"):
                    q.complete(jid, out["result"])
                    self.log.info("job_done", job_id=jid)
                else:
                    q.fail(jid, out["error"], retry=out.get("retry", True), backoff_s=self._backoff(jid))
                    self.log.warning("job_failed", job_id=jid, error=out["error"])
            elif q.heartbeat(jid, lease):  # cancel requested
                fut.cancel()
                del self.futures[jid]
                self.kinds.pop(jid, None)
                q.cancelled(jid)
        if self.stopping:
            return
        while len(self.futures) < self.capacity:
            job = q.claim("dask", lease_s=lease, kind_limits=dict(self.cfg["concurrency"]))
            if job is None:
                break
            fut = self.client.submit(run_job_remote, job["kind"], job["params"], self.volpkg, job["id"],
                                     key=f"vcd-job-{job['id']}-{job['attempts']}", pure=False)
            self.futures[job["id"]] = fut
            self.kinds[job["id"]] = job["kind"]
            self.log.info("job_submitted", job_id=job["id"], kind=job["kind"])

    def _backoff(self, jid: int) -> float:
        """Retry back-off (s) of the job's kind (:func:`vcd.jobs.retry_policy`)."""
        from ..jobs import retry_policy
        return retry_policy(self.kinds.pop(jid, "")).backoff_s

    def busy(self, q: JobQueue) -> int:
        return len(self.futures)

    def shutdown(self, q: JobQueue, timeout: float) -> None:
        self.stopping = True
        deadline = time.monotonic() + timeout
        while self.futures and time.monotonic() < deadline:
            self.supervise(q)
            time.sleep(0.2)
        for jid, fut in self.futures.items():
            fut.cancel()
            q.requeue(jid, "requeued at daemon shutdown")
        self.futures.clear()
        self.kinds.clear()
        if self.client is not None:
            self.client.close()
