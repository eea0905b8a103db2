"""The one progress printer of the long commands (``vcd grow``, ``trace``, ``render``, ``convert``).

A :class:`Progress` is a ``progress(fraction, message)`` callback (the signature every algorithm
and :class:`vcd.jobs.JobContext` take). It writes to stderr, at most once a second (and always the
final 100 %)::

    [ 41.0%] generation 6: 812 corners  | 2.3 %/s, 18 s, ETA 26 s
    [100.0%] 21/21 layers  | done in 9 s

*Rate* is the fraction per second over the last :data:`WINDOW_S` seconds; the *ETA* is the
remaining fraction at that rate. A negative fraction means "no target known": the line shows the
message and the elapsed time only. On a terminal the line is rewritten in place (``\\r``); piped or
captured, one line per report.
"""

from __future__ import annotations

import sys
import time
from collections import deque

#: rate and ETA come from the reports of the last this many seconds
WINDOW_S = 30.0


def fmt_seconds(s: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_and_eta(samples, fraction: float) -> tuple[float | None, float | None]:
    """Fraction per second and seconds left from ``samples`` of ``(monotonic time, fraction)``,
    oldest first (None while there is not enough to tell)."""
    if len(samples) < 2 or fraction < 0:
        return None, None
    (t0, f0), (t1, f1) = samples[0], samples[-1]
    if t1 - t0 <= 0 or f1 <= f0:
        return None, None
    rate = (f1 - f0) / (t1 - t0)
    return rate, max(0.0, 1.0 - fraction) / rate


class Progress:
    """A ``progress(fraction, message)`` callback that prints rate and ETA (see the module docstring)."""

    def __init__(self, stream=None, min_interval: float = 1.0):
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self.start = time.monotonic()
        self.samples: deque = deque()
        self._last_print = -1e9
        self._open_line = False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, fraction: float, message: str, now: float) -> str:
        """The text of one report (no line ending)."""
        elapsed = now - self.start
        if fraction < 0:
            return f"[  ...  ] {message}  | {fmt_seconds(elapsed)}"
        head = f"[{min(fraction, 1.0) * 100:5.1f}%] {message}"
        if fraction >= 1.0:
            return f"{head}  | done in {fmt_seconds(elapsed)}"
        rate, eta = rate_and_eta(self.samples, fraction)
        if rate is None and fraction > 0 and elapsed > 0:   # first report: the mean since the start
            rate, eta = fraction / elapsed, (1.0 - fraction) * elapsed / fraction
        if rate is None:
            return f"{head}  | {fmt_seconds(elapsed)}, ETA unknown"
        pct = 100 * rate
        r = f"{pct:.0f}" if pct >= 10 else f"{pct:.2g}"
        return f"{head}  | {r} %/s, {fmt_seconds(elapsed)}, ETA {fmt_seconds(eta)}"

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        fraction = float(fraction)
        if fraction >= 0:
            self.samples.append((now, fraction))
            while len(self.samples) > 2 and now - self.samples[1][0] > WINDOW_S:
                self.samples.popleft()
        if now - self._last_print < self.min_interval and fraction < 1.0:
            return
        self._last_print = now
        text = self.line(fraction, message, now)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._open_line = True
            if fraction >= 1.0:
                self.close()
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a line rewritten in place (call when the command ends early)."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
