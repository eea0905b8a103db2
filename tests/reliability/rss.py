"""RSS of the real daemon process and its worker processes, sampled with psutil."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil

MIB = 2 ** 20


class RssSampler:
    """Samples the RSS of a process and of its children (the worker pool) in a thread.

    ``sample()`` can also be called directly (e.g. once per soak cycle); it returns
    ``(daemon rss, daemon + workers rss)`` in bytes, or None if the process is gone."""

    def __init__(self, pid: int, every: float = 0.5):
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak_daemon = self.peak_worker = self.peak_total = 0
        self.samples: list[tuple[float, int, int]] = []  # (t, daemon rss, total rss incl. children)
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def sample(self):
        try:
            own = self.proc.memory_info().rss
            kids = self.proc.children(recursive=True)
        except psutil.Error:
            return None
        total = own
        for c in kids:
            try:
                r = c.memory_info().rss
            except psutil.Error:
                continue
            total += r
            self.peak_worker = max(self.peak_worker, r)
        with self._lock:
            self.peak_daemon = max(self.peak_daemon, own)
            self.peak_total = max(self.peak_total, total)
            self.samples.append((time.time(), own, total))
        return own, total

    def _run(self):
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()
        self.sample()


def slope_per_step(values) -> float:
    """Least-squares slope of ``values`` against their index (units per step)."""
    y = np.asarray(values, dtype=np.float64)
    if len(y) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(y)), y, 1)[0])
