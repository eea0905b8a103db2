"""Names of new surfaces: ``<prefix><17-digit local timestamp>`` as VC3D names its outputs, unique in a
directory (``auto_grown_…`` for patches, ``auto_trace_…`` for traces)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .tifxyz import timestamp_name


def unique_name(paths_dir: Path, prefix: str) -> str:
    """``<prefix><17-digit ts>``, bumped by 1 ms until unused (parallel writers never collide on rename)."""
    when = _dt.datetime.now()
    while True:
        name = timestamp_name(prefix, when)
        if not (paths_dir / name).exists():
            return name
        when += _dt.timedelta(milliseconds=1)
