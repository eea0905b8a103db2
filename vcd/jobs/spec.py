"""A job kind's policy, declared once in its own module: typed params, priority, dedup key, retry.

Each ``vcd/jobs/<kind>.py`` defines a ``Params`` dataclass (keyword-only) and
``SPEC = JobSpec(KIND, Params, priority=..., dedup=..., retry=Retry(...))``. Fields that name files or
directories are declared with :func:`path_field`; a tool's own params dataclass (``GrowParams``,
``TraceParams``) is embedded whole with :func:`embedded` and travels *flattened* in the job's JSON
(its keys beside the job's own, as VC3D writes its params files).

:meth:`JobSpec.parse` turns a JSON dict into ``Params`` (missing, unknown or mistyped keys raise
:class:`~vcd.errors.InputError` naming the key and the fix); :meth:`JobSpec.dump` is its inverse.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable

from ..errors import InputError
from ..formats.paramkeys import coerce_value, short_repr, type_name

#: added to a kind's priority when a person (``vcdctl``, ``vcd demo``) asks for the job
USER_BOOST = 2


@dataclass(frozen=True)
class Retry:
    """Retry policy: ``max_attempts`` runs in all; a failed attempt waits ``backoff_s × 2^(n-1)`` s
    before it may run again. Input errors (:class:`~vcd.errors.VcdError`) are never retried."""

    max_attempts: int = 3
    backoff_s: float = 5.0


def path_field(default: Any = MISSING, help: str = "") -> Any:
    """A params field naming a file or directory (a str, or a list of them / of lists holding them).
    Daemon jobs may only name paths inside their volpkg (:func:`vcd.jobs.confine_params`)."""
    meta = {"path": True, "help": help}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


def param(default: Any = MISSING, help: str = "") -> Any:
    """A plain params field with a help line (shown by :func:`vcd.jobs.describe`)."""
    if default is MISSING:
        return field(metadata={"help": help})
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def embedded(cls: type, paths: tuple[str, ...] = (), help: str = "") -> Any:
    """A tool's params dataclass (with ``from_dict``/``to_dict``) carried flattened in the job JSON;
    ``paths`` names its keys that are paths."""
    return field(default_factory=cls, metadata={"embedded": cls, "paths": tuple(paths), "help": help})


def _embedded_field(params_cls: type) -> dataclasses.Field | None:
    return next((f for f in fields(params_cls) if "embedded" in f.metadata), None)


def _coerce(value: Any, hint: Any, key: str, kind: str) -> Any:
    """``value`` as the annotated type ``hint`` by the one coercion rule
    (:func:`~vcd.formats.paramkeys.coerce_value`); an InputError naming the job param otherwise."""
    try:
        return coerce_value(value, hint)
    except (TypeError, ValueError, OverflowError):
        name = type_name(hint)
        raise InputError(None, f"{kind} job param {key!r} = {short_repr(value)} is not a {name}",
                         f"pass a {name} (see `vcdctl submit {kind} --help`)") from None


@dataclass(frozen=True)
class JobSpec:
    """One job kind's policy. ``dedup(params) -> str | None``: at most one *queued* job per key.
    ``wall_seconds``: a run taking longer fails (not retried) and its worker is replaced
    (``[wall_seconds]`` in vcd.toml overrides it per kind)."""

    kind: str
    params: type
    priority: int = 0
    dedup: Callable[[Any], str | None] | None = None
    retry: Retry = Retry()
    wall_seconds: float = 4 * 3600.0

    # ------------------------------------------------------------------ params
    def parse(self, raw: dict | Any, warn: Callable[[str], None] | None = None) -> Any:
        """``Params`` from a JSON dict (or a ``Params``, returned as is). Raises InputError. ``warn``
        receives the embedded tool params' warnings (unknown keys; default: the log)."""
        if isinstance(raw, self.params):
            return raw
        if not isinstance(raw, dict):
            raise InputError(None, f"{self.kind} job params must be a JSON object, not {type(raw).__name__}",
                             "pass {\"key\": value, ...}")
        hints = typing.get_type_hints(self.params)
        emb = _embedded_field(self.params)
        own = {f.name: f for f in fields(self.params) if f is not emb}
        kw: dict = {}
        for name, f in own.items():
            if name in raw:
                kw[name] = _coerce(raw[name], hints[name], name, self.kind)
            elif f.default is MISSING and f.default_factory is MISSING:
                raise InputError(None, f"{self.kind} job params lack {name!r}",
                                 f"pass {', '.join(self.required())} (see `vcdctl submit {self.kind} --help`)")
        rest = {k: v for k, v in raw.items() if k not in own}
        if emb is not None:
            kw[emb.name] = emb.metadata["embedded"].from_dict(rest, source=f"{self.kind} job params", warn=warn)
        elif rest:
            raise InputError(None, f"{self.kind} job params have unknown key(s) {sorted(rest)}",
                             f"valid keys: {sorted(own)}")
        return self.params(**kw)

    def dump(self, p: Any) -> dict:
        """The flat JSON dict of ``p`` (embedded tool params beside the job's own keys; None omitted)."""
        out: dict = {}
        for f in fields(p):
            v = getattr(p, f.name)
            if "embedded" in f.metadata:
                out.update(v.to_dict())
            elif v is not None:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    # ------------------------------------------------------------------ policy
    def dedup_key(self, p: Any) -> str | None:
        """The job's dedup key (at most one queued job per key), None for kinds without one."""
        return self.dedup(p) if self.dedup is not None else None

    def priority_for(self, by_user: bool = False) -> int:
        """The kind's priority, + :data:`USER_BOOST` when a person queued it."""
        return self.priority + (USER_BOOST if by_user else 0)

    # ------------------------------------------------------------------ description
    def path_keys(self) -> frozenset[str]:
        """Keys of the flat params JSON that name files or directories."""
        keys = set()
        for f in fields(self.params):
            if f.metadata.get("path"):
                keys.add(f.name)
            keys.update(f.metadata.get("paths", ()))
        return frozenset(keys)

    def required(self) -> list[str]:
        """Names of the params without a default."""
        return [f.name for f in fields(self.params) if f.default is MISSING and f.default_factory is MISSING]

    def describe(self) -> str:
        """Help text: one line per key (type, default, help), the embedded tool's keys, the policy."""
        hints = typing.get_type_hints(self.params)
        lines = [f"job kind {self.kind!r}: priority {self.priority} (+{USER_BOOST} when asked for by a person), "
                 f"{self.retry.max_attempts} attempts, back-off {self.retry.backoff_s:g} s doubling, "
                 f"wall-time limit {self.wall_seconds:g} s"]
        for f in fields(self.params):
            if "embedded" in f.metadata:
                cls = f.metadata["embedded"]
                lines.append(f"  plus every {cls.__name__} key: " + ", ".join(
                    f"{g.name}={getattr(cls(), g.name)!r}" for g in fields(cls)))
                continue
            tname = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            if f.default is not MISSING:
                dflt = f"default {f.default!r}"
            elif f.default_factory is not MISSING:
                dflt = f"default {f.default_factory()!r}"
            else:
                dflt = "required"
            tag = ", path" if f.metadata.get("path") else ""
            lines.append(f"  {f.name} ({tname}{tag}; {dflt}) {f.metadata.get('help', '')}".rstrip())
        return "\n".join(lines)
