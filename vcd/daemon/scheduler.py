"""Periodic work (APScheduler): keep expansion going, reconcile, housekeeping, previews.

*Expansion policy.* While the scheduler is not paused (``vcdctl pause``): if ``paths/`` holds no
patch, keep ``seed_count`` random ``seed`` jobs queued or running; otherwise, while fewer than
``target_density`` of the patches have ``tgt_overlap_count`` links (and there are fewer than
``max_patches``), keep ``expand_queue`` ``expand`` jobs queued. An expand job that finds the
collection saturated returns without writing, and the next check sees the density reached.

The decisions are pure functions of what the scheduler looked at, in
:mod:`vcd.daemon.growth_plan` (:func:`~vcd.daemon.growth_plan.failure_storm`,
:func:`~vcd.daemon.growth_plan.saturated`, :func:`~vcd.daemon.growth_plan.plan_growth`) — tested
in-process without a daemon; :class:`Scheduler` gathers their inputs from the queue and the disk
and queues what they return.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from .. import jobs
from ..errors import VcdError
from ..jobs import expand, seed
from ..post.coverage import collection_stats  # the density rule, shared with vcdctl, the demo and the previews
from . import backoff as bo
from .config import Config, job_params
from .growth_plan import failure_storm, plan_growth
from .queue import JobQueue


def growth_results(q: JobQueue, since_id: int = 0, limit: int = 400) -> list[dict]:
    """The newest finished seed/expand jobs with ``id > since_id``, newest first, results parsed
    (the input of :func:`vcd.daemon.backoff.backoff_summary`)."""
    return q.finished_growth(since_id, limit)


class Scheduler:
    def __init__(self, volpkg: Path, queue_path: Path, cfg: Config, find_volume, watcher, log):
        """``find_volume()`` returns the prediction volume's path or raises VcdError (checked on each
        expansion tick, so a volume fixed or converted while the daemon runs is picked up)."""
        self.volpkg = volpkg
        self.queue = JobQueue(queue_path)
        self.cfg = cfg
        self._find_volume = find_volume
        self._volume: Path | None = None
        self._volume_error = ""
        self.watcher = watcher
        self.log = log
        self._lock = threading.Lock()
        self._params_error = ""
        self._params_warned: set[str] = set()
        self._backing_off = False
        self._warned_backoff = False
        self.disk = None  #: the daemon's DiskGuard: its periodic jobs wait while the disk is full
        self.sched = BackgroundScheduler(daemon=True)

    def volume(self) -> Path | None:
        """The prediction volume, or None while it is unusable (logged once per distinct problem;
        linking, retraces and everything else go on — only growth waits for a usable volume)."""
        if self._volume is None:
            try:
                self._volume = self._find_volume()
                if self._volume_error:
                    self.log.info("volume_usable", volume=str(self._volume))
                self._volume_error = ""
            except VcdError as exc:
                if exc.message != self._volume_error:
                    self.log.error("volume_unusable", error=exc.message, hint="seeding and expansion wait for a "
                                   "usable volume; linking and retraces go on")
                self._volume_error = exc.message
        return self._volume

    def growth_params(self, kind: str):
        """Typed params of the next ``seed`` or ``expand`` job: the volpkg's params file + config
        overrides, the prediction volume and ``paths/`` (raises InputError for a bad params file)."""
        module = seed if kind == "seed" else expand
        return module.params_for(job_params(self.cfg, self.volpkg, kind), str(self.volume()),
                                 str(self.volpkg / "paths"), warn=self._warn_once)

    def _warn_once(self, message: str) -> None:
        """A params-file warning (e.g. an unknown key), logged once per daemon run, not every tick."""
        if message not in self._params_warned:
            self._params_warned.add(message)
            self.log.warning("params_warning", message=message)

    def grow_params(self, kind: str) -> dict:
        """:meth:`growth_params` as the job's JSON dict; while the params file does not parse, its
        keys as written (nothing is queued then, see :meth:`_usable_params`)."""
        try:
            return jobs.get_spec(kind).dump(self.growth_params(kind))
        except VcdError:
            return {**job_params(self.cfg, self.volpkg, kind), "volume": str(self.volume()),
                    "paths": str(self.volpkg / "paths")}

    def _usable_params(self) -> bool:
        """Both growth params build (logged once per distinct problem; growth waits until fixed)."""
        try:
            self.growth_params("seed"), self.growth_params("expand")
        except VcdError as exc:
            if exc.message != self._params_error:
                self.log.error("growth_params_invalid", error=exc.message, hint="fix seed.json / expand.json "
                               "or [params.seed] / [params.expand] in vcd.toml; seeding and expansion wait")
            self._params_error = exc.message
            return False
        self._params_error = ""
        return True

    def ensure_expansion(self) -> None:
        """Queue the growth jobs :func:`~vcd.daemon.growth_plan.plan_growth` asks for (not while
        paused, without a volume or usable params, or in a failure storm)."""
        with self._lock:
            q, s = self.queue, self.cfg.schedule
            if not s.expansion or q.get_kv("paused", False):
                return
            if self.volume() is None:
                return
            if not self._usable_params():
                return
            state, now = self.growth_backoff(), time.time()
            recent = q.growth_states_since(now - 60)
            if failure_storm(recent):
                if not self._backing_off:
                    self.log.warning("expansion_backoff", failed_last_minute=recent["failed"],
                                     hint="see `vcdctl ls --state failed`")
                self._backing_off = True
                return
            self._backing_off = False
            params = {"seed": self.growth_params("seed"), "expand": self.growth_params("expand")}
            stats = collection_stats(self.volpkg, params["expand"].grow.tgt_overlap_count)
            for kind in plan_growth(s, q.counts(), stats, q.recent_results("expand", 4), state, now):
                jobs.submit(q, kind, params[kind], max_attempts=self.cfg.daemon.max_attempts)

    def growth_backoff(self) -> dict:
        """Recompute the back-off state from the queue, store it (kv ``growth_backoff``) when it
        changed, log the warning once per episode (and when it ends); returns the state."""
        q, s = self.queue, self.cfg.schedule
        fp = bo.fingerprint(self.grow_params("seed"), self.grow_params("expand"), bo.volume_signature(self._volume))
        prev_epoch = q.get_kv(bo.KV_EPOCH)
        epoch = bo.epoch_since(prev_epoch, fp, q.last_id())
        if epoch != prev_epoch:
            q.set_kv(bo.KV_EPOCH, epoch)
        summary = bo.backoff_summary(growth_results(q, epoch["since"]))
        state = bo.backoff_state(summary, s.backoff_after, s.backoff_base_seconds, s.backoff_max_seconds)
        if state["active"] and not self._warned_backoff:
            self._warned_backoff = True
            self.log.warning("seeding_backoff", message=bo.status_line(state), jobs_in_a_row=state["streak"],
                             reason=state["top_text"], reason_class=state["top"], fix=state["fix"],
                             interval_s=state["interval_s"], max_interval_s=s.backoff_max_seconds)
        elif self._warned_backoff and not state["active"]:
            self._warned_backoff = False
            self.log.info("seeding_backoff_ended", why="params or volume changed" if epoch != prev_epoch
                          else "a growth job wrote a patch")
        if state != q.get_kv(bo.KV_STATE):
            q.set_kv(bo.KV_STATE, state)
        return state

    def housekeeping(self) -> None:
        """Requeue the jobs whose lease expired (their worker died)."""
        with self._lock:
            for jid in self.queue.requeue_expired():
                self.log.warning("lease_expired", job_id=jid)

    def reconcile(self) -> None:
        """Full rescan of the surfaces (catches what the watcher missed)."""
        n = self.watcher.scan()
        self.log.info("reconciled", surfaces=n)

    def refresh_previews(self) -> None:
        """Ask the watcher's preview thread for a refresh of ``.vcd/previews``."""
        self.watcher.previews.request()  # the same single, coalescing preview thread as after traces

    def _guarded(self, fn):
        """``fn`` as a periodic job: skipped while the disk is full, a disk-full error reported once
        (:meth:`vcd.daemon.diskspace.DiskGuard.guard`), not a traceback."""
        return fn if self.disk is None else self.disk.guard(fn)

    def start(self) -> None:
        s = self.cfg.schedule
        self.sched.add_job(self._guarded(self.ensure_expansion), "interval", seconds=s.interval_seconds, max_instances=1,
                           coalesce=True)
        self.sched.add_job(self._guarded(self.housekeeping), "interval", seconds=s.housekeeping_seconds, max_instances=1,
                           coalesce=True)
        self.sched.add_job(self._guarded(self.reconcile), "interval", seconds=s.reconcile_seconds, max_instances=1, coalesce=True)
        if self.cfg.autoseg.enabled:  # docs/autoseg.md
            from .autoseg import Autoseg
            self.autoseg = Autoseg(self.volpkg, self.queue.path, self.cfg, self.volume, self.log)
            self.sched.add_job(self._guarded(self.autoseg.tick), "interval", seconds=self.cfg.autoseg.interval_seconds,
                               max_instances=1, coalesce=True)
        if s.preview_seconds > 0:
            self.sched.add_job(self.refresh_previews, "interval", seconds=s.preview_seconds, max_instances=1,
                               coalesce=True)
        self.sched.start()

    def stop(self) -> None:
        self.sched.shutdown(wait=False)
