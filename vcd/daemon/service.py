"""``run_daemon``: one long-running process per volpkg.

Holds ``<volpkg>/.vcd/daemon.lock`` for its lifetime (``lock.py``: a second daemon on the same
volpkg exits 1 with one line naming the first; a killed daemon's lock is free at once). Starts the
queue (``<volpkg>/.vcd/vcd.sqlite``), the watcher (after a reconciliation scan), the worker pool,
the scheduler and the metrics server (which also serves the status page, ``status_page.py``); supervises workers every 0.5 s; on SIGTERM or
SIGINT (or ``stop_event``) stops claiming, lets running jobs finish up to ``shutdown_timeout`` and
requeues the rest. Sends ``READY=1`` to systemd when ``NOTIFY_SOCKET`` is set (``Type=notify``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from ..errors import FormatError, InputError
from ..formats.volpkg import open_volpkg, state_dir
from ..post.coverage import collection_stats
from . import logs, memdiag
from .config import Config, tgt_overlap_count
from .diskspace import DiskGuard, is_disk_full
from .lock import DaemonLock
from .metrics import Metrics
from .pool import LocalPool
from .queue import JobQueue, queue_path
from .scheduler import Scheduler
from .status_page import Refreshing, StatusPage
from .watcher import Watcher


def _sd_notify(msg: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(msg.encode())


def prediction_volume(volpkg: Path, cfg: Config) -> Path:
    """The surface-prediction volume the daemon grows on.

    Parameters
    ----------
    volpkg : pathlib.Path
        The volpkg.
    cfg : Config
        Its config (``[daemon] volume``: a name in ``volumes/``, "" = the one named ``*pred*`` /
        ``*surface*``).

    Returns
    -------
    pathlib.Path
        The volume directory (opened and validated).

    Raises
    ------
    FormatError
        No such volume, or it does not open; the message names the fix.
    """
    vp = open_volpkg(volpkg)
    name = cfg.daemon.volume or None
    vol = vp.volume(name)  # validates, raises FormatError with a fix
    return vol.path


def run_daemon(volpkg: str | os.PathLike, cfg: Config, stop_event: threading.Event | None = None) -> int:
    """Run the daemon on one volpkg until SIGTERM / SIGINT or ``stop_event``: lock, queue, watcher,
    scheduler (and autoseg when ``[autoseg] enabled``), executor, metrics and status page.

    Parameters
    ----------
    volpkg : str or os.PathLike
        The volpkg to serve.
    cfg : Config
        The loaded config (:func:`vcd.daemon.config.load_config`).
    stop_event : threading.Event, optional
        Set it to stop (tests, ``vcd demo``); signals stop it too.

    Returns
    -------
    int
        The process exit code: 0 after a clean stop, 130 after Ctrl-C (SIGINT).

    Raises
    ------
    VcdError
        The volpkg does not open, or another daemon holds its lock (one line, with the fix).
    """
    volpkg = Path(volpkg).resolve()
    logs.configure(cfg.daemon.log_format)
    log = logs.get_logger(volpkg=volpkg.name)
    open_volpkg(volpkg)  # a volpkg the daemon cannot use at all stops it with one line
    state_dir(volpkg).mkdir(exist_ok=True)
    lock = DaemonLock(state_dir(volpkg))  # one daemon per volpkg; a second one stops here with one line
    lock.acquire(cfg.daemon.metrics_addr or "")
    try:
        return _run_locked(volpkg, cfg, log, stop_event, lock)
    finally:
        lock.release()


def _state_intact(lock: DaemonLock, qpath: Path, ino: int) -> bool:
    """The lock file and the database are still the ones this daemon opened (``.vcd/`` not deleted,
    moved or replaced under it: others would see a state this daemon does not)."""
    try:
        return lock.intact() and os.stat(qpath).st_ino == ino
    except OSError:
        return False


def _run_locked(volpkg: Path, cfg: Config, log, stop_event: threading.Event | None, lock: DaemonLock) -> int:
    (volpkg / "traces").mkdir(exist_ok=True)  # watched from the start (VC3D scans it too)
    tmp_dir = state_dir(volpkg) / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    qpath = queue_path(volpkg)
    q = JobQueue(qpath)  # a damaged file stops the daemon here with one line (vcdctl repair)
    q.check_integrity()
    qino = os.stat(qpath).st_ino
    stop_event = stop_event or threading.Event()
    memdiag.start_from_env(log, stop_event)  # VCD_TRACEMALLOC=<seconds>: periodic allocation diffs in the log

    got = {}

    def on_signal(signum, frame):
        # only note it: the handler runs on the main thread between two of its bytecodes, so logging here
        # (structlog's PrintLogger writes under a lock) or setting the Event (a plain lock too) could wait
        # forever on a lock the interrupted code holds — seen when SIGTERM came while a log line was
        # being written to a full pipe. The loop below notices within 0.1 s and does the rest.
        got["signum"] = signum
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    metrics = Metrics()
    watcher = Watcher(volpkg, qpath, cfg, log, metrics)
    if cfg.daemon.executor == "dask":
        from .dask_executor import DaskPool
        pool = DaskPool(qpath, volpkg, cfg, log)
    else:
        pool = LocalPool(qpath, volpkg, cfg, log)
    # the collection's numbers for /metrics and the status page: recomputed in the background once 2 s old
    # (a scrape or a page view never waits for a re-read of every patch)
    stats = Refreshing(lambda: collection_stats(volpkg, tgt_overlap_count(cfg, volpkg)), 2.0).get
    mq = JobQueue(qpath)
    mq_lock = threading.Lock()

    def busy():
        with mq_lock:
            return pool.busy(mq)
    server = None
    disk = None  # the DiskGuard, made below (the page asks it once it exists)
    addr = cfg.daemon.metrics_addr
    if addr:
        try:
            page = StatusPage(volpkg, qpath, lock.info, stats, busy, workers=int(cfg.daemon.workers),
                              executor=cfg.daemon.executor,
                              tgt_overlap_count=lambda: tgt_overlap_count(cfg, volpkg),
                              disk_full=lambda: bool(disk and disk.full))
            server = metrics.serve(addr, mq, stats, busy, page)
        except OSError as exc:
            raise InputError(None, f"cannot serve metrics on {addr} ({exc.strerror})",
                             "choose another --metrics-addr or stop the other daemon") from None
    # reclaim what a previous run left: its running jobs (we hold the lock, so the daemon that ran them is
    # dead and its workers died with it: no need to wait for their leases), stale staging directories
    orphans = q.requeue_expired(all_running=True)
    if orphans:
        log.info("requeued_at_start", jobs=orphans[:50], count=len(orphans))
    for stale in tmp_dir.iterdir():
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            import shutil
            shutil.rmtree(stale, ignore_errors=True)
    # watch first, then scan: a surface written while the daemon starts is seen by one or the other (it
    # used to be missed until the next reconcile when it landed between the scan and the watcher's start)
    watcher.start()
    n = watcher.scan()
    sched = Scheduler(volpkg, qpath, cfg, lambda: prediction_volume(volpkg, cfg), watcher, log)
    disk = DiskGuard([state_dir(volpkg), volpkg / "paths"], log, on_resume=lambda: threading.Thread(
        target=sched.reconcile, name="vcd-rescan", daemon=True).start())  # what arrived while full
    sched.disk = watcher.disk = disk
    metrics.disk_full.set_function(lambda: float(disk.full))
    log.info("daemon_started", volume=str(sched.volume()), surfaces=n, metrics=addr, workers=cfg.daemon.workers,
             executor=cfg.daemon.executor, pid=os.getpid())
    pool.start()
    sched.start()
    sched.ensure_expansion()
    _sd_notify("READY=1")

    def stopping():
        return stop_event.is_set() or "signum" in got
    gone = ""
    try:
        while not stopping():
            if not _state_intact(lock, qpath, qino):
                gone = (f"{state_dir(volpkg)} was deleted or replaced while the daemon ran; it stops rather than "
                        "work on a state nobody else sees. Fix: start the daemon again")
                log.error("state_dir_gone", error=gone)
                break
            disk.tick()
            try:
                pool.supervise(q)
            except Exception as exc:  # a full disk pauses the daemon; it never stops it
                if not is_disk_full(exc):
                    raise
                disk.hit(exc)
            for _ in range(5):  # supervise every 0.5 s, notice a signal within 0.1 s
                if stopping():
                    break
                stop_event.wait(0.1)
    finally:
        if "signum" in got:
            log.info("signal", signum=got["signum"])
        stop_event.set()  # every thread that watches it stops too
        log.info("daemon_stopping")
        _sd_notify("STOPPING=1")
        sched.stop()
        watcher.stop()
        pool.shutdown(q, float(cfg.daemon.shutdown_timeout))
        if server is not None:
            server.shutdown()
        log.info("daemon_stopped")
    if gone:
        raise FormatError(state_dir(volpkg), "the daemon's state folder was deleted or replaced while it ran (stopped)",
                          "start the daemon again")
    return 130 if got.get("signum") == signal.SIGINT else 0  # Ctrl-C: stopped cleanly, exit as interrupted
