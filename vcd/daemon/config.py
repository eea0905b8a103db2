"""Daemon configuration: TOML, every key optional (``vcd daemon my.volpkg`` just runs).

Looked up in this order: ``--config FILE``, ``$VCD_CONFIG``, ``<volpkg>/vcd.toml``. One frozen
dataclass per TOML table, every key with a ``help`` line; ``config/vcd.example.toml`` is generated
from them (``python -m vcd.daemon.config > config/vcd.example.toml``; a test keeps the two in step).
Unknown tables and keys are an :class:`InputError` naming them with the closest known key; job kinds
(``[concurrency]``, ``[params_files]``, ``[params.<kind>]``, ``[pipeline] after_trace``) are checked
against the job registry (:data:`vcd.jobs.KIND_MODULES`).

Job params follow VC3D: ``seed.json``, ``expand.json`` and ``trace_params.json`` at the volpkg root are
used when present, with ``[params.<kind>]`` tables overriding single keys (:func:`job_params`).

Read a fixed-key table by attribute (``cfg.daemon.workers``, ``cfg.schedule.seed_count``): it is a
frozen dataclass, not a mapping. The kind-keyed tables (``[concurrency]``, ``[wall_seconds]``,
``[params_files]``, ``[params]``) are read-only mappings of job kind -> value, because their keys are
job kinds, not fields (``cfg.concurrency.get("trace")``). Tests build a table directly
(``ScheduleTable(seed_count=4)``) or a validated config with :func:`make_config`.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import textwrap
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InputError, VcdError
from ..formats.jsonio import read_json
from ..formats.overlaps import TGT_OVERLAP_COUNT
from ..formats.paramkeys import coerce_value, type_name, unknown_keys


def key(default: Any, help: str, choices: tuple = ()) -> Any:
    """A config key: its default, a one-sentence description and (optionally) the allowed values."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices)})


def _frozen_map(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


def _by_kind(default: Mapping, help: str, example: str = "") -> Any:
    """The one field of a kind -> value table (``example``: commented lines shown in the example file)."""
    return field(default_factory=lambda: _frozen_map(default), metadata={"help": help, "example": example})


class _KindTable(Mapping):
    """A kind -> value table (its one field ``by_kind``), read as a read-only mapping: its keys are job
    kinds, which no dataclass field can name."""

    def __getitem__(self, k: str) -> Any:
        return self.by_kind[k]

    def __iter__(self):
        return iter(self.by_kind)

    def __len__(self) -> int:
        return len(self.by_kind)

    def __reduce__(self):  # MappingProxyType does not pickle; rebuild from plain dicts
        plain = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.by_kind.items()}
        return _kind_table, (type(self), plain)


def _kind_table(cls: type, plain: dict) -> "_KindTable":
    return cls(by_kind=_frozen_map({k: _frozen_map(v) if isinstance(v, dict) else v for k, v in plain.items()}))


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, eq=True)
class DaemonTable:
    """``[daemon]``: the service itself."""

    volume: str = key("", "surface-prediction volume dir in volumes/ (\"\" = the one named *pred*/*surface*)")
    workers: int = key(2, "worker processes (local executor); with dask, the minimum number of jobs kept in flight")
    executor: str = key("local", "\"local\" process pool, or \"dask\" (see config/vcd.dask.example.toml)",
                        ("local", "dask"))
    dask_scheduler: str = key("", "\"tcp://host:8786\" when executor = \"dask\"")
    lease_seconds: float = key(60.0, "a job whose worker stops heartbeating this long is requeued")
    shutdown_timeout: float = key(30.0, "on SIGTERM running jobs may finish this long, then are requeued")
    debounce_seconds: float = key(0.5, "a surface dir must be quiet this long before the watcher acts")
    log_format: str = key("auto", "\"json\" (Loki/ELK), \"console\", or \"auto\" (console on a TTY)",
                          ("auto", "json", "console"))
    metrics_addr: str = key("127.0.0.1:9464", "Prometheus /metrics HOST:PORT; \"\" disables")
    thread_limit: int = key(1, "numba threads per worker")
    max_attempts: int = key(0, "runs (with back-off) before a job stays failed, for every job the daemon "
                            "queues; 0 = each kind's own (`vcdctl submit KIND --help`)")


@dataclass(frozen=True, eq=True)
class ConcurrencyTable(_KindTable):
    """``[concurrency]``: job kind -> most jobs of that kind running at once."""

    by_kind: Mapping[str, int] = _by_kind({}, "maximum running jobs per kind (unset = no limit), e.g.:",
                                          "trace = 1\nrender = 1")


@dataclass(frozen=True, eq=True)
class WallSecondsTable(_KindTable):
    """``[wall_seconds]``: job kind -> wall-time limit (s) of one run (unset = the kind's own limit)."""

    by_kind: Mapping[str, float] = _by_kind({}, "wall-time limit of one run per kind in seconds (unset = the kind's "
                                            "default, `vcdctl submit KIND --help`); a run taking longer fails and "
                                            "its worker is replaced, e.g.:", "trace = 86400\nsleep = 600")


@dataclass(frozen=True, eq=True)
class ParamsFilesTable(_KindTable):
    """``[params_files]``: job kind -> VC3D params JSON relative to the volpkg."""

    by_kind: Mapping[str, str] = _by_kind(
        {"seed": "seed.json", "expand": "expand.json", "trace": "trace_params.json"},
        "VC3D params JSON per job kind, relative to the volpkg (used when present)")


@dataclass(frozen=True, eq=True)
class ParamsTable(_KindTable):
    """``[params.<kind>]``: single-key overrides of a kind's params, on top of its params file."""

    by_kind: Mapping[str, Mapping[str, Any]] = _by_kind(
        {}, "single-key overrides on top of the params files (VC3D keys), one [params.<kind>] table per kind, e.g.:",
        "[params.seed]\ngenerations = 200\nmin_area_cm = 0.3")


@dataclass(frozen=True, eq=True)
class ScheduleTable:
    """``[schedule]``: what the daemon queues by itself."""

    expansion: bool = key(True, "keep seeding / expanding until the density target is met")
    seed_count: int = key(4, "random seeds kept queued while paths/ has no patch")
    expand_queue: int = key(2, "expand jobs kept queued while below target")
    target_density: float = key(1.0, "also stop when this share of patches has >= tgt_overlap_count links "
                                     "(expansion stops by itself when no under-covered place is left)")
    max_patches: int = key(100000, "stop seeding / expanding at this many patches")
    interval_seconds: float = key(2.0, "expansion check period")
    reconcile_seconds: float = key(60.0, "full rescan of paths/ (catches anything the watcher missed)")
    housekeeping_seconds: float = key(2.0, "expired-lease requeue period")
    auto_retrace: bool = key(True, "retrace traces whose patches' masks / approved / defective change")
    preview_seconds: float = key(0.0, "refresh .vcd/previews this often (0 = only after traces)")
    backoff_after: int = key(20, "after this many seed/expand jobs in a row that wrote nothing (0 = never) ...")
    backoff_base_seconds: float = key(30.0, "... queue one growth job at a time, this long after the last one "
                                            "finished, ...")
    backoff_max_seconds: float = key(1800.0, "... doubling per further empty job up to this; a written patch or "
                                             "a change of seed.json / expand.json / the volume ends it "
                                             "(`vcdctl status` shows why)")


@dataclass(frozen=True, eq=True)
class PipelineTable:
    """``[pipeline]``: jobs chained after others."""

    after_trace: tuple[str, ...] = key((), "job kinds queued for each finished trace, e.g. [\"winding\", \"render\"]")


@dataclass(frozen=True, eq=True)
class AutosegTable:
    """``[autoseg]``: tracing, QA-gating and fusing by itself (``vcd autoseg``; docs/autoseg.md)."""

    enabled: bool = key(False, "trace, QA-gate and fuse by itself once growth is finished (vcd autoseg sets it)")
    self_configure: bool = key(True, "measure the prediction (wrap spacing, thickness, values) and derive the "
                                     "params that params files leave out; adapt a param that makes growth "
                                     "impossible (.vcd/autoconf.json)")
    interval_seconds: float = key(5.0, "autoseg check period")
    parallel_traces: int = key(4, "trace jobs kept queued or running at once (a seed's two ways count two)")
    max_traces: int = key(0, "stop planning traces after this many (0 = no limit: planning ends when no "
                                 "patch off the final sheets is left to seed one)")
    both_directions: bool = key(True, "every trace seed is traced both ways along the sheet (+u, and -u with "
                                      "flip_x); the two halves share the seed patch and are fused")
    min_links: int = key(0, "links a seed patch needs (0 = half the collection's median, at least 2)")
    core_cells: float = key(3.0, "seeds lie at least this many trace cells from the collection's axis")
    covered_max: float = key(0.5, "a patch with more than this share near an accepted trace seeds no trace")
    cover_tol: float = key(0.0, "voxels within which a point counts as on a trace (0 = patch step / 3, >= 2)")
    qa_threshold: float = key(0.5, "QA suspicion at which a trace corner is a hot spot")
    qa_dilate: int = key(1, "hot spots are cut with this many corners around them (2: also jumps two cells "
                            "from a hot corner)")
    min_kept_share: float = key(0.2, "a trace keeping less than this share after the cut is rejected")
    fuse: bool = key(True, "fuse overlapping accepted traces of the same sheet (fuse job)")
    gap_seeds: int = key(2, "once growth is finished, explicit seeds kept queued where predicted surface lies on "
                            "no patch (0 = off; needs self_configure's surface samples)")
    coverage_every: float = key(30.0, "seconds between measurements of the predicted surface's coverage")
    stall_seconds: float = key(240.0, "done once coverage of the predicted surface rose less than stall_gain "
                                      "over this long (and nothing is pending)")
    stall_gain: float = key(0.005, "coverage gain (share) below which more work counts as not helping")


def _table(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help, "table": cls})


@dataclass(frozen=True, eq=True)
class Config:
    """The whole daemon config: one field per TOML table."""

    daemon: DaemonTable = _table(DaemonTable, "the service")
    concurrency: ConcurrencyTable = _table(ConcurrencyTable, "maximum running jobs per kind (unset = no limit)")
    wall_seconds: WallSecondsTable = _table(WallSecondsTable, "wall-time limit of one run per kind (s)")
    params_files: ParamsFilesTable = _table(ParamsFilesTable, "VC3D params JSON per job kind, relative to the volpkg")
    params: ParamsTable = _table(ParamsTable, "single-key overrides on top of the files (VC3D keys)")
    schedule: ScheduleTable = _table(ScheduleTable, "what the daemon queues by itself")
    pipeline: PipelineTable = _table(PipelineTable, "jobs chained after others")
    autoseg: AutosegTable = _table(AutosegTable, "tracing, QA-gating and fusing by itself")

    def replace(self, **tables: dict) -> "Config":
        """A copy with single keys changed, e.g. ``cfg.replace(pipeline={"after_trace": ["winding"]})``
        (validated like the file)."""
        return parse({**to_dict(self), **{t: {**to_dict(self)[t], **v} for t, v in tables.items()}})


# ---------------------------------------------------------------------------- parsing


def _unknown_line(d: Mapping, known, what: str, source) -> None:
    bad = unknown_keys(dict(d), known)
    if bad:
        names = ", ".join(f"{k!r}" + (f" (did you mean {c!r}?)" if c else "") for k, c in bad)
        raise InputError(source, f"unknown {what}: {names}", f"valid: {sorted(known)}")


def _coerce(value: Any, hint: Any, where: str, source) -> Any:
    """``value`` as ``hint`` by the one coercion rule (:func:`~vcd.formats.paramkeys.coerce_value`);
    an InputError naming ``where`` (``[table] key``) otherwise."""
    try:
        return coerce_value(value, hint)
    except (TypeError, ValueError, OverflowError):
        pass
    name = "boolean" if hint is bool else type_name(hint)
    a = "an" if name[0] in "aeiou" else "a"
    raise InputError(source, f"{where} = {value!r} is not {a} {name}", "write true or false" if hint is bool
                     else f"write {a} {name}")


def _parse_fixed(cls: type, raw: Mapping, name: str, source) -> Any:
    _unknown_line(raw, _names(cls), f"key(s) in [{name}]", source)
    hints = typing.get_type_hints(cls)
    kw = {}
    for f in fields(cls):
        if f.name in raw:
            v = _coerce(raw[f.name], hints[f.name], f"[{name}] {f.name}", source)
            if f.metadata["choices"] and v not in f.metadata["choices"]:
                raise InputError(source, f"[{name}] {f.name} = {v!r}",
                                 "use one of " + ", ".join(json.dumps(c) for c in f.metadata["choices"]))
            kw[f.name] = v
    return cls(**kw)


def _check_kinds(kinds, what: str, source) -> None:
    from ..jobs import KIND_MODULES
    _unknown_line({k: None for k in kinds}, KIND_MODULES, f"job kind(s) in {what}", source)


def _parse_by_kind(cls: type, raw: Mapping, name: str, source) -> Any:
    _check_kinds(raw, f"[{name}]", source)
    base = dict(cls().by_kind)
    for kind, v in raw.items():
        if cls is ConcurrencyTable:
            v = _coerce(v, int, f"[{name}] {kind}", source)
            if v < 0:
                raise InputError(source, f"[{name}] {kind} = {v} is negative", "use a count >= 1, or remove the key")
        elif cls is WallSecondsTable:
            v = _coerce(v, float, f"[{name}] {kind}", source)
            if v <= 0:
                raise InputError(source, f"[{name}] {kind} = {v:g} is not positive", "use seconds > 0, or remove the key")
        elif cls is ParamsFilesTable:
            v = _coerce(v, str, f"[{name}] {kind}", source)
        elif not isinstance(v, Mapping):
            raise InputError(source, f"[{name}] {kind} = {v!r} is not a table",
                             f"write [{name}.{kind}] with one key = value per line")
        else:
            v = _frozen_map(v)
        base[kind] = v
    return cls(by_kind=_frozen_map(base))


def parse(raw: Mapping, source: str | os.PathLike | None = None) -> Config:
    """Build and validate a :class:`Config` from a TOML-shaped dict.

    Parameters
    ----------
    raw : Mapping
        ``{table: {key: value}}`` as ``tomllib`` reads it; missing tables and keys take their defaults.
    source : str or os.PathLike, optional
        The file it came from, named in errors.

    Returns
    -------
    Config
        Frozen; tables read as attributes (``cfg.daemon.workers``).

    Raises
    ------
    InputError
        Unknown table or key (with the closest known one), a wrong type, or values that do not fit
        together.
    """
    _unknown_line(raw, _names(Config), "table(s)", source)
    kw = {}
    for f in fields(Config):
        sub = raw.get(f.name, {})
        if not isinstance(sub, Mapping):
            raise InputError(source, f"[{f.name}] is not a table", f"write [{f.name}] and its keys below it")
        cls = f.metadata["table"]
        parser = _parse_by_kind if issubclass(cls, _KindTable) else _parse_fixed
        kw[f.name] = parser(cls, sub, f.name, source)
    cfg = Config(**kw)
    _check_kinds(cfg.pipeline.after_trace, "[pipeline] after_trace", source)
    _check(cfg, source)
    return cfg


def _check(cfg: Config, source) -> None:
    """Rules between keys and value ranges."""
    d, sch = cfg.daemon, cfg.schedule
    if d.executor == "dask" and not d.dask_scheduler:
        raise InputError(source, "[daemon] executor = \"dask\" needs dask_scheduler", "set dask_scheduler = \"tcp://host:8786\"")
    if d.workers < 1:
        raise InputError(source, "[daemon] workers must be >= 1", "set workers = 2")
    if d.max_attempts < 0:
        raise InputError(source, "[daemon] max_attempts must be >= 0", "set max_attempts = 0 (each kind's own)")
    if sch.backoff_after < 0 or sch.backoff_base_seconds <= 0 or sch.backoff_max_seconds < sch.backoff_base_seconds:
        raise InputError(source, "[schedule] needs backoff_after >= 0, backoff_base_seconds > 0 and "
                         "backoff_max_seconds >= backoff_base_seconds", "defaults: 20, 30.0, 1800.0")
    addr = d.metrics_addr
    if addr and (":" not in addr or not addr.rsplit(":", 1)[1].isdigit()):
        raise InputError(source, f"[daemon] metrics_addr {addr!r} is not HOST:PORT", "e.g. \"127.0.0.1:9464\"")


def to_dict(cfg: Config) -> dict:
    """The TOML-shaped dict of ``cfg`` (plain dicts and lists)."""
    out: dict = {}
    for f in fields(cfg):
        t = getattr(cfg, f.name)
        if isinstance(t, _KindTable):
            out[f.name] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in t.by_kind.items()}
        else:
            out[f.name] = {k.name: list(v) if isinstance(v := getattr(t, k.name), tuple) else v for k in fields(t)}
    return out


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, "config file not found", "check --config / VCD_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"config is not valid TOML ({exc})", "fix the syntax") from None


def make_config(**tables: Mapping) -> Config:
    """A validated :class:`Config` from TOML-shaped tables, the rest defaults — e.g.
    ``make_config(schedule={"seed_count": 4})`` (what a test writes instead of a vcd.toml)."""
    return parse(tables)


def load_config(volpkg: str | os.PathLike, path: str | os.PathLike | None = None,
                overrides: Mapping | None = None) -> Config:
    """Load the daemon's config: ``path``, else ``$VCD_CONFIG``, else ``<volpkg>/vcd.toml``, else defaults.

    Parameters
    ----------
    volpkg : str or os.PathLike
        The volpkg (where ``vcd.toml`` is looked for).
    path : str or os.PathLike, optional
        ``--config FILE``.
    overrides : Mapping, optional
        TOML-shaped values applied on top (e.g. ``{"daemon": {"workers": 4}}`` from command-line flags).

    Returns
    -------
    Config
        Validated (:func:`parse`).

    Raises
    ------
    InputError
        The file is missing or not TOML, or a key is bad; the message names the file and key.
    """
    volpkg = Path(volpkg)
    path = path or os.environ.get("VCD_CONFIG") or (volpkg / "vcd.toml" if (volpkg / "vcd.toml").exists() else None)
    user = _read_toml(path) if path else {}
    return parse(_merge(user, overrides or {}), path)


def job_params(cfg: Config, volpkg: Path, kind: str) -> dict:
    """Params for a daemon-queued job of ``kind``, in layers, later ones winning.

    1. when autoseg runs, the params it derived from the prediction (``.vcd/autoconf.json``,
       :mod:`vcd.jobs.autoconf`);
    2. the VC3D params file at the volpkg root (``[params_files]``);
    3. ``[params.<kind>]``;
    4. when autoseg runs, what it adapted because the layers above made growth impossible (e.g.
       every patch under ``min_area_cm``).

    Parameters
    ----------
    cfg : Config
        The daemon's config.
    volpkg : pathlib.Path
        The volpkg.
    kind : str
        The job kind.

    Returns
    -------
    dict
        VC3D-keyed params (not yet validated: the kind's ``params_for`` / :func:`vcd.jobs.submit` do).

    Raises
    ------
    FormatError
        The params file is not readable JSON.
    """
    volpkg = Path(volpkg)
    plan = _autoconf_plan(cfg, volpkg)
    params: dict = dict((plan or {}).get("derived", {}).get(kind, {}))
    fname = cfg.params_files.get(kind)
    if fname and (volpkg / fname).exists():
        data = read_json(volpkg / fname, f"{kind} params")
        if isinstance(data, dict):
            params.update(data)
    params.update(cfg.params.get(kind, {}))
    params.update((plan or {}).get("adapted", {}).get(kind, {}))
    return params


def _autoconf_plan(cfg: Config, volpkg: Path) -> dict | None:
    """The autoseg plan when ``[autoseg] enabled`` and one was measured, else None (the plain daemon
    runs on the params files and VC3D's defaults alone)."""
    if not (cfg.autoseg.enabled and cfg.autoseg.self_configure):
        return None
    from ..jobs.autoconf import load_autoconf
    return load_autoconf(volpkg)


def tgt_overlap_count(cfg: Config | None, volpkg: Path) -> int:
    """The links per patch the scheduler's density rule counts against — the one reader of it.

    Parameters
    ----------
    cfg : Config or None
        The daemon's config (``--config``, ``$VCD_CONFIG`` or ``<volpkg>/vcd.toml``, see
        :func:`load_config`); None when it does not load.
    volpkg : Path
        The volpkg (its ``[params_files] expand`` file, ``expand.json`` by default).

    Returns
    -------
    int
        ``tgt_overlap_count`` of the ``expand`` job's params (:func:`job_params`, coerced as the job
        coerces it), links per patch. VC3D's default (:data:`vcd.formats.overlaps.TGT_OVERLAP_COUNT`)
        when those params do not build — the scheduler reports a bad params file; the density rule,
        the metrics and the previews go on.
    """
    from ..jobs import expand
    if cfg is None:
        return TGT_OVERLAP_COUNT
    try:
        raw = job_params(cfg, Path(volpkg), "expand")
        return expand.params_for(raw, "", "", warn=lambda message: None).grow.tgt_overlap_count
    except VcdError:
        return TGT_OVERLAP_COUNT


def patch_step_for(cfg: Config, volpkg: Path) -> float:
    """Voxels per patch grid cell: the patches' ``step_size`` (:func:`vcd.formats.volpkg.patch_step`),
    else the ``expand`` job's (:func:`job_params`), else VC3D's 20."""
    from ..formats.volpkg import patch_step
    step = patch_step(Path(volpkg) / "paths")
    if step is not None:
        return step
    try:
        return float(job_params(cfg, Path(volpkg), "expand").get("step_size", 20))
    except VcdError:
        return 20.0


def cover_tol(cfg: Config, volpkg: Path) -> float:
    """Voxels within which a point counts as on an accepted trace or final sheet (autoseg's planning,
    gate anchor, tiling and report): ``[autoseg] cover_tol``, or (0) a third of
    :func:`patch_step_for`, at least 2."""
    t = float(cfg.autoseg.cover_tol)
    return t if t > 0 else max(2.0, patch_step_for(cfg, volpkg) / 3.0)


# ---------------------------------------------------------------------------- the example file

EXAMPLE_HEADER = """\
# vcd daemon configuration. Every key is optional; these are the defaults.
# Used from --config FILE, $VCD_CONFIG, or <volpkg>/vcd.toml.
# Generated by `python -m vcd.daemon.config > config/vcd.example.toml` (tests/daemon/test_config.py
# checks they are in step): edit the help text in vcd/daemon/config.py, not here.
"""

_COL = 30  # comment column
_WIDTH = 110


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return json.dumps(list(v))
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _commented(left: str, help: str) -> list[str]:
    lines = textwrap.wrap(help, _WIDTH - _COL - 2) or [""]
    out = [f"{left:<{_COL}}# {lines[0]}" if len(left) < _COL else f"{left}   # {lines[0]}"]
    return out + [f"{'':<{_COL}}# {rest}" for rest in lines[1:]]


def _example_table(name: str, cls: type) -> list[str]:
    if issubclass(cls, _KindTable):
        f = fields(cls)[0]
        left = f"[{name}]" if cls is not ParamsTable else f"# [{name}.<kind>]"
        out = _commented(left, f.metadata["help"])
        out += [f"{k} = {_toml_value(v)}" for k, v in cls().by_kind.items()]
        return out + [f"# {line}" for line in f.metadata["example"].splitlines()]
    out = [f"[{name}]"]
    for f in fields(cls):
        out += _commented(f"{f.name} = {_toml_value(f.default)}", f.metadata["help"])
    return out


def example_toml() -> str:
    """The text of ``config/vcd.example.toml``: every table and key with its default and help."""
    parts = [EXAMPLE_HEADER]
    for f in fields(Config):
        parts.append("\n".join(_example_table(f.name, f.metadata["table"])) + "\n")
    return "\n".join(parts)


__all__ = ["Config", "DaemonTable", "ConcurrencyTable", "WallSecondsTable", "ParamsFilesTable", "ParamsTable", "ScheduleTable",
           "PipelineTable", "AutosegTable", "load_config", "make_config", "parse", "to_dict", "job_params",
           "tgt_overlap_count", "patch_step_for", "cover_tol", "example_toml"]

if __name__ == "__main__":
    sys.stdout.write(example_toml())
