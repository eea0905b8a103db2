"""Prometheus metrics, served over HTTP (default ``127.0.0.1:9464``).

Queue-derived metrics are read from SQLite at scrape time (so they are right whichever process ran
the job): ``vcd_jobs{kind,state}``, ``vcd_jobs_completed_total{kind,state}``,
``vcd_job_duration_seconds{kind}`` (histogram over finished jobs), ``vcd_queue_depth``,
``vcd_oldest_queued_age_seconds``, ``vcd_workers_busy``, ``vcd_job_failures_total{reason}``.
Collection metrics: ``vcd_patches``, ``vcd_traces``, ``vcd_patch_area_cm2``,
``vcd_overlap_deficit`` (patches with fewer than ``tgt_overlap_count`` links). Growth back-off
(:mod:`vcd.daemon.backoff`): ``vcd_seed_failures_total{kind}`` (seed/expand jobs that wrote nothing:
done without a patch, except a saturated expansion, or failed), ``vcd_seed_backoff`` (1 while
backed off), ``vcd_seed_backoff_interval_seconds``, ``vcd_seed_empty_streak`` (jobs in a row that
wrote nothing), ``vcd_seed_last_failure_info{reason,top}`` (reason classes from a fixed vocabulary).
Process counters: ``vcd_watcher_events_total``.

The same listener serves the status page (:mod:`vcd.daemon.status_page`) at ``/``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

from .backoff import KV_STATE

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class QueueCollector:
    def __init__(self, queue, collection_stats, busy):
        self.queue = queue
        self.collection_stats = collection_stats
        self.busy = busy

    def collect(self):
        q = self.queue
        counts = q.counts()
        g = GaugeMetricFamily("vcd_jobs", "Jobs by kind and state", labels=["kind", "state"])
        c = CounterMetricFamily("vcd_jobs_completed", "Jobs that reached a final state", labels=["kind", "state"])
        for (kind, state), n in counts.items():
            g.add_metric([kind, state], n)
            if state in ("done", "failed", "cancelled"):
                c.add_metric([kind, state], n)
        yield g
        yield c
        yield GaugeMetricFamily("vcd_queue_depth", "Queued jobs",
                                value=sum(n for (k, s), n in counts.items() if s == "queued"))
        oldest = q.oldest_queued_created()
        yield GaugeMetricFamily("vcd_oldest_queued_age_seconds", "Age of the oldest queued job",
                                value=(time.time() - oldest) if oldest else 0.0)
        yield GaugeMetricFamily("vcd_workers_busy", "Workers running a job", value=self.busy())
        h = HistogramMetricFamily("vcd_job_duration_seconds", "Run time of finished jobs", labels=["kind"])
        by_kind: dict[str, list[float]] = {}
        for kind, dur in q.done_durations(20000):
            by_kind.setdefault(kind, []).append(dur)
        for kind, durs in by_kind.items():
            buckets = [(str(b), sum(d <= b for d in durs)) for b in BUCKETS] + [("+Inf", len(durs))]
            h.add_metric([kind], buckets, sum(durs))
        yield h
        f = CounterMetricFamily("vcd_job_failures", "Failed jobs by reason", labels=["reason"])
        for err, n in q.failed_errors().items():
            reason = (err.split(":")[0] if err else "unknown")[:60]
            f.add_metric([reason], n)
        yield f
        yield from growth_metrics(q)
        stats = self.collection_stats()
        for key, help_ in (("patches", "Patches in paths/"), ("traces", "Traces"),
                           ("patch_area_cm2", "Total patch area (cm²)"),
                           ("overlap_deficit", "Patches with fewer than tgt_overlap_count links")):
            yield GaugeMetricFamily(f"vcd_{key}", help_, value=stats.get(key, 0))


def growth_metrics(q):
    """Seed/expand jobs that wrote nothing (from the jobs table) and the scheduler's back-off state
    (from the kv table) — right whichever process ran the jobs."""
    f = CounterMetricFamily("vcd_seed_failures", "Seed/expand jobs that wrote nothing (failed, or done without "
                            "a patch other than a saturated expansion)", labels=["kind"])
    n = q.empty_growth_counts()
    for kind in ("seed", "expand"):
        f.add_metric([kind], n.get(kind, 0))
    yield f
    st = q.get_kv(KV_STATE) or {}
    yield GaugeMetricFamily("vcd_seed_backoff", "1 while seeding/expansion is backed off",
                            value=int(bool(st.get("active"))))
    yield GaugeMetricFamily("vcd_seed_backoff_interval_seconds", "Current back-off wait between growth jobs",
                            value=float(st.get("interval_s") or 0.0))
    yield GaugeMetricFamily("vcd_seed_empty_streak", "Seed/expand jobs in a row that wrote nothing",
                            value=int(st.get("streak") or 0))
    if st.get("last"):
        yield InfoMetricFamily("vcd_seed_last_failure", "Reason class of the newest and the most frequent empty "
                               "growth job of the current streak",
                               value={"reason": st["last"], "top": st.get("top") or ""})


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.watcher_events = Counter("vcd_watcher_events", "Filesystem events seen by the watcher",
                                      registry=self.registry)
        self.disk_full = Gauge("vcd_disk_full", "1 while the disk holding .vcd/ or paths/ is full (daemon paused)",
                               registry=self.registry)

    def serve(self, addr: str, queue, collection_stats, busy, page=None):
        """Serve ``/metrics`` (and, given a :class:`~vcd.daemon.status_page.StatusPage`, the status page
        at ``/`` and its images) on ``addr`` (``host:port``) in a thread; returns the server."""
        from .status_page import StatusServer
        self.registry.register(QueueCollector(queue, collection_stats, busy))
        host, port = addr.rsplit(":", 1)
        server = StatusServer((host.strip("[]"), int(port)), self.registry, page)
        server.serve_in_thread()
        return server
