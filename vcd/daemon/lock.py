"""One daemon per volpkg: an exclusive ``flock`` on ``<volpkg>/.vcd/daemon.lock`` plus a JSON sidecar.

The lock file itself is the truth: the kernel drops a ``flock`` when its holder dies (also on
``kill -9``), so a stale lock from a killed daemon is taken over by the next daemon without any
clean-up. The volpkg directory itself is locked as well, so deleting ``.vcd/`` (and with it the
lock file) under a running daemon cannot let a second one start beside it (:meth:`DaemonLock.intact`
tells the first one to stop). The descriptor is close-on-exec, so spawned workers never hold it. The sidecar
``daemon.json`` (pid, host, start time as Unix seconds, metrics address, version) only says who
holds it, for the refusal message and for ``vcdctl status``; it is rewritten by each new holder
and is never trusted on its own.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .. import __version__
from ..errors import VcdError
from ..formats.volpkg import state_dir as _state_dir

LOCK_NAME = "daemon.lock"
INFO_NAME = "daemon.json"


class DaemonRunning(VcdError):
    """Another daemon holds this volpkg's lock."""


def _read_info(state_dir: Path) -> dict:
    try:
        info = json.loads((state_dir / INFO_NAME).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def since_text(t) -> str:
    """A start time (Unix seconds) as local ``YYYY-MM-DD HH:MM:SS``."""
    try:
        return _dt.datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def describe(info: dict) -> str:
    """``pid 123 on host h since 2026-12-01 05:40:52, metrics 127.0.0.1:9464`` from a sidecar dict."""
    port = info.get("metrics_addr") or "off"
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {since_text(info.get('started'))}, "
            f"metrics {port}")


class DaemonLock:
    """Held for the daemon's lifetime: ``acquire()`` or raise :class:`DaemonRunning`; ``release()``."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self.info: dict = {}  #: the sidecar written by acquire()

    def acquire(self, metrics_addr: str = "", wait_s: float = 2.0) -> dict:
        """Take the lock (retrying ``wait_s`` seconds: a ``vcdctl status`` probe holds it for an instant),
        write the sidecar and return it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        dir_fd = _open_dir(self.state_dir.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        for f in (dir_fd, fd):
            if f is not None and not _flock_until(f, deadline):
                for g in (dir_fd, fd):
                    if g is not None:
                        os.close(g)
                raise self._refusal()
        self._fd, self._dir_fd = fd, dir_fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "metrics_addr": metrics_addr, "version": __version__}
        tmp = self.state_dir / f".{INFO_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.state_dir / INFO_NAME)
        os.ftruncate(fd, 0)  # the lock file also names its holder, for people reading it by hand
        os.write(fd, f"{info['pid']} {info['host']}\n".encode())
        self.info = info
        return info

    def _refusal(self) -> DaemonRunning:
        info = _read_info(self.state_dir)
        return DaemonRunning(self.path, f"another vcd daemon runs on this volpkg ({describe(info)})",
                             f"stop it first (kill {info.get('pid', '<pid>')} on {info.get('host', 'its host')}) "
                             "or use it through vcdctl; one daemon per volpkg")

    def intact(self) -> bool:
        """False once the lock file this daemon holds is gone or replaced (``.vcd/`` deleted or moved):
        the daemon must stop, its state is no longer what others see."""
        if self._fd is None:
            return False
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except OSError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self.intact():  # never remove a sidecar that is not ours
                (self.state_dir / INFO_NAME).unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            if self._dir_fd is not None:
                fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
                os.close(self._dir_fd)
                self._dir_fd = None


def _open_dir(path: Path) -> int | None:
    """A descriptor of the volpkg directory to lock, or None where directories cannot be locked
    (the lock file alone then holds)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _flock_until(fd: int, deadline: float, mode: int = fcntl.LOCK_EX) -> bool:
    """Take ``flock(fd, mode)``, retrying until ``deadline`` (monotonic s); False when another holds it.
    A file system that cannot lock this descriptor (``EBADF``/``ENOLCK``, e.g. a directory on NFS) counts
    as taken."""
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        except OSError:
            return True


def refuse_if_running(volpkg: Path) -> None:
    """Raise :class:`DaemonRunning` (one line naming the holder) when a daemon holds ``volpkg``'s lock:
    for commands that would write state before starting their daemon (``vcd autoseg``)."""
    if running_daemon(volpkg) is not None:
        raise DaemonLock(_state_dir(volpkg))._refusal()


def running_daemon(volpkg: Path) -> dict | None:
    """The sidecar of the daemon holding ``volpkg``'s lock, or None when no daemon runs.

    Probes with a shared, non-blocking ``flock`` (released at once); a daemon starting in that instant
    retries its exclusive lock for a moment, so the probe cannot make it fail."""
    state_dir = _state_dir(volpkg)
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _dir_holder(Path(volpkg))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_info(state_dir) or {"pid": "?", "host": "?"}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _dir_holder(volpkg: Path) -> dict | None:
    """With no lock file: whether a daemon still holds the volpkg directory (its ``.vcd/`` was deleted
    under it; it stops within a second)."""
    fd = _open_dir(volpkg)
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return {"pid": "?", "host": "?"}
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
