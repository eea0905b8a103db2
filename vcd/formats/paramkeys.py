"""The one way params are read, shared by the tools' params files (``GrowParams``, ``TraceParams``,
``FillParams``) and the job kinds' ``Params`` (:mod:`vcd.jobs.spec`): unknown keys (typos) named
with the closest known key, and one coercion rule per type (:func:`coerce`)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import os
import typing
from typing import Any, Callable, Iterable

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


def coerce_value(value: Any, hint: Any) -> Any:
    """``value`` (from JSON or TOML) as the annotated type ``hint`` — the one coercion rule of every
    params file, job param and config key. Raises TypeError/ValueError when it is not one:

    - ``X | None``: None stays None (for any other type None is refused);
    - ``str``: a string or a path (never a number);
    - ``int``: an integral number (``3``, ``3.0``, ``"3"``), never a boolean;
    - ``float``: a finite number (or a numeric string), never a boolean — NaN and infinities are
      refused (``step_size = NaN`` would pass any ``> 0`` check; ``seconds = 1e999`` never ends);
    - ``bool``: a JSON boolean or the strings ``"true"``/``"false"`` (any case) — ``bool("false")``
      would be True;
    - ``list``: a list or tuple (paths in it become strings); ``tuple[T, ...]``: a list or tuple of
      ``T``s; ``dict``: an object."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in (_TRUE, _FALSE):
            return value.strip().lower() == _TRUE
        raise TypeError(value)
    if value is None or isinstance(value, bool):
        raise TypeError(value)
    if origin is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise TypeError(value)
    if origin is int:
        f = _finite(value)
        if f != int(f):
            raise ValueError(value)
        return int(f)
    if origin is float:
        return _finite(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        if origin is tuple:
            return tuple(coerce_value(v, args[0]) for v in value)
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise TypeError(value)
    return value


#: bounds of one job's params, checked when it is queued (:func:`check_size`): a 10 MB value once
#: grew the queue file by 100 MB in seconds (issue 31)
MAX_KEYS = 200
MAX_VALUE_BYTES = 64 << 10


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages never echo a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def check_size(d: dict, source: Any = "params") -> None:
    """Refuse params with more than :data:`MAX_KEYS` keys or a value whose JSON is larger than
    :data:`MAX_VALUE_BYTES` (InputError naming the key)."""
    if len(d) > MAX_KEYS:
        raise InputError(source, f"too many params ({len(d)} keys, at most {MAX_KEYS})", "pass only the keys you need")
    for k, v in d.items():
        try:
            n = len(json.dumps(v, default=str))
        except (TypeError, ValueError):
            continue  # not JSON at all: the type check names it
        if n > MAX_VALUE_BYTES or len(str(k)) > 200:
            raise InputError(source, f"param {short_repr(k, 60)} is too large ({n} bytes, at most {MAX_VALUE_BYTES})",
                             "pass a file name instead of the data itself")


def _finite(value: Any) -> float:
    """``float(value)``, refusing NaN and infinities (ValueError)."""
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(value)
    return f


def type_name(hint: Any) -> str:
    """A short name of an annotated type for messages (``int``, ``list of str``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint):
        hint = args[0]
        args = list(typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is tuple and args:
        return "list of strings" if args[0] is str else f"list of {getattr(args[0], '__name__', args[0])}"
    if origin is float:  # the coercion refuses NaN and infinities: say so
        return "finite float"
    return getattr(origin, "__name__", str(origin))


def coerce(value: Any, hint: Any, key: str, source: Any = "params", example: Any = None) -> Any:
    """:func:`coerce_value` for the params files of the tools: a wrong value is an InputError from
    ``source`` naming ``key``, the type and an example value."""
    try:
        return coerce_value(value, hint)
    except (TypeError, ValueError, OverflowError):
        name = type_name(hint)
        fix = (f"write \"{key}\": true or \"{key}\": false" if name == "bool"
               else f"use a {name} like {example!r}")
        raise InputError(source, f"param {key!r} has invalid value {short_repr(value)} (not a {name})", fix) from None


def fields_from_dict(cls: type, d: dict, source: Any = "params", warn: Callable[[str], None] | None = None,
                     known: Iterable[str] | None = None, examples: dict | None = None) -> dict:
    """Keyword arguments for the params dataclass ``cls`` from the JSON object ``d``: every field
    present in ``d`` through :func:`coerce` (by its annotation), unknown keys (not in ``known``,
    default the fields) warned about once each. Raises InputError (naming ``source``) when ``d``
    is not an object or a value has the wrong type."""
    if not isinstance(d, dict):
        raise InputError(source, "params must be a JSON object", "write {\"key\": value, ...}")
    hints = typing.get_type_hints(cls)
    flds = dataclasses.fields(cls)
    warn_unknown(d, {f.name for f in flds} if known is None else known, source, warn)
    defaults = cls()
    examples = examples or {}
    return {f.name: coerce(d[f.name], hints[f.name], f.name, source, examples.get(f.name, getattr(defaults, f.name)))
            for f in flds if f.name in d}
