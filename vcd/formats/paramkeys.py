"""Checks shared by the params files of the tools (``GrowParams``, ``TraceParams``): unknown keys
(typos) named with the closest known key, and booleans parsed as JSON booleans."""

from __future__ import annotations

import difflib
import logging
from typing import Callable, Iterable

from ..errors import InputError

log = logging.getLogger("vcd.params")

_TRUE, _FALSE = "true", "false"


def unknown_keys(d: dict, known: Iterable[str]) -> list[tuple[str, str | None]]:
    """``(key, closest known key or None)`` for every key of ``d`` not in ``known`` (sorted)."""
    known = sorted(set(known))
    out = []
    for k in sorted(d):
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
            out.append((k, close[0] if close else None))
    return out


def warn_unknown(d: dict, known: Iterable[str], source: str = "params",
                 warn: Callable[[str], None] | None = None) -> list[str]:
    """One warning line per unknown key of ``d``: ``unknown param 'generatons' (did you mean
    'generations'?) in SOURCE — ignored``. Returns the unknown keys."""
    out = []
    for k, close in unknown_keys(d, known):
        hint = f" (did you mean {close!r}?)" if close else ""
        msg = f"unknown param {k!r}{hint} in {source} — ignored"
        (warn or log.warning)(msg)
        out.append(k)
    return out


def parse_bool(value, key: str, source: str = "params") -> bool:
    """A JSON boolean, or the strings ``"true"``/``"false"`` (any case); anything else is an InputError
    (``bool("false")`` would be True)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (_TRUE, _FALSE):
        return value.strip().lower() == _TRUE
    raise InputError(source, f"param {key!r} has invalid value {value!r} (not a boolean)",
                     f"write \"{key}\": true or \"{key}\": false")
