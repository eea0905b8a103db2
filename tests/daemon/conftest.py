"""Fixtures that run the real daemon process on a real synthetic volpkg."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcd.daemon.queue import JobQueue

from ..conftest import sigint_default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WAIT_CAP = float(os.environ.get("VCD_TEST_WAIT_CAP", "300"))
"""Seconds a test waits for daemon work before it fails: a generous cap, not a deadline. Tests wait on
the event itself (a log line, a file, a job state), so a busy machine makes them slower, not red;
latencies are measured in ``bench/``, never asserted."""

_GROUPS: set[int] = set()  # process groups (= sessions) of every daemon started by this pytest process


def group_members(pgid: int) -> list[int]:
    """Pids still alive in the session ``pgid`` a daemon was started in (the daemon, its workers,
    orphans of a kill -9'd daemon), read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[2]) == pgid and int(fields[3]) == pgid:
            out.append(int(entry))
    return out


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in a daemon's session (members are checked by pgid and session id,
    so a recycled pid outside it is never hit)."""
    for pid in group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _GROUPS.discard(pgid)


atexit.register(lambda: [kill_group(g) for g in list(_GROUPS)])  # daemons started outside the fixture


def _on_sigterm(signum, frame):
    """pytest itself killed (SIGTERM skips fixture teardown and atexit): kill the daemons, then die as asked."""
    for g in list(_GROUPS):
        kill_group(g)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)


class Daemon:
    def __init__(self, volpkg: Path, config: str = "", workers: int = 2):
        self.volpkg = volpkg
        self.port = free_port()
        self.cfg = volpkg / "vcd.toml"
        self.cfg.write_text(config)
        self.workers = workers
        self.proc = None
        self.groups: list[int] = []  # one per start(): a restart after kill -9 gets a new session
        self.log = volpkg.parent / "daemon.log"

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def events(self, event: str) -> list[dict]:
        """The parsed JSON log lines whose ``event`` is ``event`` (other lines, e.g. warnings, skipped)."""
        out = []
        for line in self.log_text().splitlines():
            if f'"{event}"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == event:
                    out.append(rec)
        return out

    def start(self):
        mark = self.log.stat().st_size if self.log.exists() else 0  # the log is appended across restarts
        # no PYTHONUNBUFFERED: stderr is then line-buffered, so each log line is one write() and the lines of
        # the daemon and its workers (all appending to one file) never interleave mid-line
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vcd", "daemon", str(self.volpkg), "--metrics-addr", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--log-format", "json"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=sigint_default)
        self.groups.append(self.proc.pid)
        _GROUPS.add(self.proc.pid)
        self.wait_for(lambda: "daemon_started" in self.log_text(mark), "daemon start")
        return self

    def wait_for(self, cond, what, *legacy, cap: float = WAIT_CAP):
        """Poll ``cond()`` until true; fail only when the daemon exits or after ``cap`` seconds.

        The old form ``wait_for(cond, timeout, what)`` still works; its timeout can only raise the cap."""
        if legacy:
            cap, what = max(cap, float(what)), legacy[0]
        t0 = time.time()
        while time.time() - t0 < cap:
            if cond():
                return time.time() - t0
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                                     + self.log_text()[-3000:])
            time.sleep(0.05)
        raise AssertionError(f"no {what} after {cap:.0f} s:\n" + self.log_text()[-3000:])

    def queue(self) -> JobQueue:
        return JobQueue.for_volpkg(self.volpkg)

    def stop(self, sig=signal.SIGTERM, timeout=WAIT_CAP):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill_all(self):
        """SIGKILL every process of every start (daemon, workers, orphans of a kill -9'd daemon)."""
        for g in self.groups:
            kill_group(g)
        if self.proc:
            self.proc.wait()


QUIET = """
[schedule]
expansion = false
reconcile_seconds = 3600
[daemon]
lease_seconds = 3
shutdown_timeout = 2
debounce_seconds = 0.3
"""


@pytest.fixture
def daemon_factory(scroll_copy):
    """Makes :class:`Daemon` s on the test's private scroll copy; every process any of them started
    is killed at teardown, also when the test failed (nothing is left running for minutes)."""
    made = []

    def make(config: str = QUIET, workers: int = 2) -> Daemon:
        d = Daemon(scroll_copy, config, workers)
        made.append(d)
        return d
    yield make
    for d in made:
        d.kill_all()
