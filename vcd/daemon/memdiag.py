"""Memory diagnostics for a long-running daemon (off unless ``VCD_TRACEMALLOC`` is set).

``VCD_TRACEMALLOC=<seconds>`` starts :mod:`tracemalloc` (``VCD_TRACEMALLOC_FRAMES`` frames, default
6) and logs a ``memdiag`` line every ``<seconds>``: the process RSS, the Python heap tracemalloc
sees (current and peak), the thread count, the object types whose count grew most since the first
report, and the allocation sites (file:line, innermost frames) that grew most since the first report.
Growth of RSS without growth of the traced heap points at native memory (C libraries, allocator
fragmentation); growth of the traced heap names the Python line that keeps the memory.

A diagnostic, not a production setting: tracing slows every allocation, and the first snapshot is
kept for the comparisons, so RSS itself is inflated (in the accelerated soak, 130 → 290 MiB at the
first report) — judge by ``traced_mib`` and ``top_growth`` there, by RSS without it.
"""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc
from collections import Counter


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _type_counts() -> Counter:
    return Counter(type(o).__name__ for o in gc.get_objects())


def start_from_env(log, stop_event: threading.Event) -> threading.Thread | None:
    spec = os.environ.get("VCD_TRACEMALLOC")
    if not spec:
        return None
    period = float(spec)
    frames = int(os.environ.get("VCD_TRACEMALLOC_FRAMES", "6"))
    tracemalloc.start(frames)
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
               tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"), tracemalloc.Filter(False, "<unknown>")]

    def run():
        base = base_types = None
        while not stop_event.wait(period):
            snap = tracemalloc.take_snapshot().filter_traces(filters)
            types = _type_counts()
            cur, peak = tracemalloc.get_traced_memory()
            top, grown = [], []
            if base is None:
                base, base_types = snap, types
            else:
                for st in snap.compare_to(base, "traceback")[:12]:
                    if st.size_diff <= 0:
                        continue
                    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in list(st.traceback)[:frames])
                    top.append(f"{st.size_diff / 1024:+.0f} KiB ({st.count_diff:+d}) {where}")
                grown = [f"{k} {n - base_types.get(k, 0):+d}" for k, n in
                         sorted(types.items(), key=lambda kv: base_types.get(kv[0], 0) - kv[1])[:8]]
            log.info("memdiag", rss_mib=round(_rss_mib(), 1), traced_mib=round(cur / 2 ** 20, 2),
                     traced_peak_mib=round(peak / 2 ** 20, 2), threads=threading.active_count(),
                     objects=sum(types.values()), top_growth=top, type_growth=grown)
    th = threading.Thread(target=run, name="vcd-memdiag", daemon=True)
    th.start()
    log.info("memdiag_started", period=period, frames=frames)
    return th
