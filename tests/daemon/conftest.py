"""Fixtures that run the real daemon process on a real synthetic volpkg."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcd.daemon.queue import JobQueue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, volpkg: Path, config: str = "", workers: int = 2):
        self.volpkg = volpkg
        self.port = free_port()
        self.cfg = volpkg / "vcd.toml"
        self.cfg.write_text(config)
        self.workers = workers
        self.proc = None
        self.log = volpkg.parent / "daemon.log"

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vcd", "daemon", str(self.volpkg), "--metrics-addr", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--log-format", "json"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.wait_for(lambda: "daemon_started" in self.log.read_text(), 60, "daemon start")
        return self

    def wait_for(self, cond, timeout, what):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if cond():
                return time.time() - t0
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                                     + self.log.read_text()[-3000:])
            time.sleep(0.05)
        raise AssertionError(f"timeout waiting for {what}:\n" + self.log.read_text()[-3000:])

    def queue(self) -> JobQueue:
        return JobQueue.for_volpkg(self.volpkg)

    def stop(self, sig=signal.SIGTERM, timeout=30):
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
    made = []

    def make(config: str = QUIET, workers: int = 2) -> Daemon:
        d = Daemon(scroll_copy, config, workers)
        made.append(d)
        return d
    yield make
    for d in made:
        if d.proc and d.proc.poll() is None:
            try:
                os.killpg(d.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            d.proc.wait()
        # orphaned workers of a kill -9'd daemon exit on their own; make sure
        subprocess.run(["pkill", "-9", "-f", f"vcd.*{d.volpkg}"], capture_output=True)
