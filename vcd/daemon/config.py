"""Daemon configuration: TOML, every key optional (``vcd daemon my.volpkg`` just runs).

Looked up in this order: ``--config FILE``, ``$VCD_CONFIG``, ``<volpkg>/vcd.toml``. Documented in
``config/vcd.example.toml``. Job params follow VC3D: ``seed.json``, ``expand.json`` and
``trace_params.json`` at the volpkg root are used when present, with ``[params.<kind>]`` tables
overriding single keys.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

from ..errors import InputError
from ..formats.jsonio import read_json

DEFAULTS: dict = {
    "daemon": {
        "volume": "",                 # directory name in volumes/ of the surface prediction ("" = auto)
        "workers": 2,                 # worker processes (local executor)
        "executor": "local",          # "local" process pool or "dask"
        "dask_scheduler": "",         # e.g. "tcp://10.0.0.5:8786" when executor = "dask"
        "lease_seconds": 60.0,        # a job whose worker stops heartbeating this long is requeued
        "shutdown_timeout": 30.0,     # SIGTERM: seconds running jobs may finish before being requeued
        "debounce_seconds": 0.5,      # a surface dir must be quiet this long before it is acted on
        "log_format": "auto",         # "json", "console" or "auto" (console on a TTY)
        "metrics_addr": "127.0.0.1:9464",
        "thread_limit": 1,            # numba threads per worker
        "max_attempts": 3,
    },
    "concurrency": {},                # kind -> max running jobs, e.g. trace = 1
    "params_files": {"seed": "seed.json", "expand": "expand.json", "trace": "trace_params.json"},
    "params": {},                     # kind -> {key: value} overrides
    "schedule": {
        "expansion": True,            # keep seeding/expanding until the density target is met
        "seed_count": 4,              # random seeds queued when paths/ has no patches
        "expand_queue": 2,            # expand jobs kept queued while below target
        "target_density": 1.0,        # stop when this share of patches has >= tgt_overlap_count links
        "max_patches": 100000,
        "interval_seconds": 2.0,      # expansion check period
        "reconcile_seconds": 60.0,    # full rescan of paths/ for changes missed by the watcher
        "housekeeping_seconds": 2.0,  # expired-lease requeue period
        "auto_retrace": True,         # retrace traces whose patches' masks/tags change
        "preview_seconds": 0.0,       # refresh previews this often (0 = only after traces)
        "backoff_after": 20,          # growth jobs in a row that wrote nothing before seeding backs off (0 = never)
        "backoff_base_seconds": 30.0,  # first back-off wait after the last growth job; doubles per empty job
        "backoff_max_seconds": 1800.0,  # longest back-off wait
    },
    "pipeline": {"after_trace": []},  # job kinds queued for each finished trace, e.g. ["winding", "render"]
}

_TYPES = {"workers": int, "lease_seconds": float, "shutdown_timeout": float, "debounce_seconds": float,
          "thread_limit": int, "max_attempts": int, "seed_count": int, "expand_queue": int,
          "target_density": float, "max_patches": int, "interval_seconds": float, "reconcile_seconds": float,
          "housekeeping_seconds": float, "preview_seconds": float,
          "backoff_after": int, "backoff_base_seconds": float, "backoff_max_seconds": float}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(volpkg: str | os.PathLike, path: str | os.PathLike | None = None,
                overrides: dict | None = None) -> dict:
    """Load, merge with defaults and validate; raises :class:`InputError` naming the bad key."""
    volpkg = Path(volpkg)
    path = path or os.environ.get("VCD_CONFIG") or (volpkg / "vcd.toml" if (volpkg / "vcd.toml").exists() else None)
    user: dict = {}
    if path:
        try:
            user = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(path, "config file not found", "check --config / VCD_CONFIG") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"config is not valid TOML ({exc})", "fix the syntax") from None
    cfg = _merge(DEFAULTS, user)
    if overrides:
        cfg = _merge(cfg, overrides)
    for section in ("daemon", "schedule"):
        for k, v in cfg[section].items():
            if k not in DEFAULTS[section]:
                raise InputError(path, f"unknown key [{section}] {k}", f"valid keys: {sorted(DEFAULTS[section])}")
            if k in _TYPES:
                try:
                    cfg[section][k] = _TYPES[k](v)
                except (TypeError, ValueError):
                    raise InputError(path, f"[{section}] {k} = {v!r} is not a {_TYPES[k].__name__}",
                                     f"default is {DEFAULTS[section][k]!r}") from None
    if cfg["daemon"]["executor"] not in ("local", "dask"):
        raise InputError(path, f"[daemon] executor = {cfg['daemon']['executor']!r}", "use \"local\" or \"dask\"")
    if cfg["daemon"]["executor"] == "dask" and not cfg["daemon"]["dask_scheduler"]:
        raise InputError(path, "[daemon] executor = \"dask\" needs dask_scheduler", "set dask_scheduler = \"tcp://host:8786\"")
    if cfg["daemon"]["workers"] < 1:
        raise InputError(path, "[daemon] workers must be >= 1", "set workers = 2")
    sch = cfg["schedule"]
    if sch["backoff_after"] < 0 or sch["backoff_base_seconds"] <= 0 or sch["backoff_max_seconds"] < sch["backoff_base_seconds"]:
        raise InputError(path, "[schedule] needs backoff_after >= 0, backoff_base_seconds > 0 and "
                         "backoff_max_seconds >= backoff_base_seconds", "defaults: 20, 30.0, 1800.0")
    addr = cfg["daemon"]["metrics_addr"]
    if addr and (":" not in addr or not addr.rsplit(":", 1)[1].isdigit()):
        raise InputError(path, f"[daemon] metrics_addr {addr!r} is not HOST:PORT", "e.g. \"127.0.0.1:9464\"")
    return cfg


def job_params(cfg: dict, volpkg: Path, kind: str) -> dict:
    """Params for a daemon-queued job of ``kind``: VC3D params file at the volpkg root + overrides."""
    params: dict = {}
    fname = cfg["params_files"].get(kind)
    if fname and (volpkg / fname).exists():
        data = read_json(volpkg / fname, f"{kind} params")
        if isinstance(data, dict):
            params.update(data)
    params.update(cfg["params"].get(kind, {}))
    return params
