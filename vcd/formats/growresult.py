"""How one growth run (a ``seed``/``expand`` job, ``vcd grow``) ended, as data.

:func:`vcd.grow.run.run_grow` writes it into its result dict (``result["stop"]``, stored with the
job in the queue); the daemon reads it back — the queue's count of growth jobs that wrote nothing,
the back-off's reason classes (:func:`vcd.daemon.backoff.classify`) — without parsing the
human-readable ``reason`` sentence. Here, below both, because the grower writes it and the daemon
(which never imports the grower) reads it.
"""

from __future__ import annotations

from enum import Enum
from typing import TypedDict

#: the key of a growth result that holds its :class:`GrowStop` value
STOP_KEY = "stop"


class GrowStop(str, Enum):
    """Why a growth run ended; the values are stored (JSON strings) and are Prometheus labels."""

    WROTE = "wrote"                           #: a patch was written
    SATURATED = "saturated"                   #: expansion found no under-covered point: its normal end
    NO_SURFACE = "no_surface_found"           #: random probes found no uncovered predicted surface
    SEED_DOES_NOT_FIT = "seed_does_not_fit"   #: no start point let the first quad fit
    OFF_PREDICTION = "off_prediction"         #: too few vertices on the prediction (min_on_prediction_support)
    UNDER_MIN_AREA = "under_min_area"         #: the patch was smaller than min_area_cm


class GrowResult(TypedDict, total=False):
    """The result dict of :func:`vcd.grow.run.run_grow` (the job's stored result).

    ``written``: the new patch's directory name, or None; ``stop``: a :class:`GrowStop` value;
    ``reason``: the same in words (for people: logs, ``vcdctl show``); ``fix``: what a user can
    change; ``area_cm2`` (cm²), ``area_vx2`` (level-0 voxels²), ``corners``, ``stats``,
    ``refusals``, ``top_refusal``, ``mode``, ``source_patch``, ``elapsed_s`` (s) when they apply."""

    written: str | None
    stop: str
    reason: str
    fix: str
    area_cm2: float
    area_vx2: float
    corners: int
    stats: dict
    refusals: dict
    top_refusal: str
    mode: str
    source_patch: str
    elapsed_s: float


def stop_of(result: dict | None) -> GrowStop | None:
    """The :class:`GrowStop` of a stored growth result, or None (no result, or one written before
    results carried it)."""
    try:
        return GrowStop((result or {}).get(STOP_KEY))
    except ValueError:
        return None
