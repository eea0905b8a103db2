"""Events the reliability tests wait on (never a fixed sleep: a busy machine makes them slower, not red)."""

from __future__ import annotations

import json


def watcher_saw(q, vp, names) -> bool:
    """True when the daemon's watcher has recorded the current on-disk state (tracer tags, mask) of
    every named surface still in ``paths/`` — it queues what an edit calls for (overlap, retrace)
    before it records the new state, so this is the event "the watcher has acted"."""
    from vcd.daemon.watcher import surface_fingerprint
    for n in names:
        pd = vp / "paths" / n
        try:
            meta = json.loads((pd / "meta.json").read_text())
            want = surface_fingerprint(pd, meta)
        except (FileNotFoundError, ValueError):
            continue  # deleted (or being replaced right now: the next poll sees it)
        fp = q.fingerprint(n)
        if fp is None or (fp["tags"], fp["mask"]) != tuple(want):
            return False
    return True
