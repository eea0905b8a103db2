"""JSON exactly as VC3D writes it (nlohmann::json, ``setw(4)``), and atomic file replacement."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import FormatError


def _clean(obj: Any) -> Any:
    """Replace NaN/Inf by None (VC writes ``null``) and numpy scalars/arrays by Python values."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def vc_dumps(obj: Any) -> str:
    """Serialise like VC3D: indent 4, sorted keys, raw UTF-8, NaN -> null, trailing newline."""
    return json.dumps(_clean(obj), indent=4, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file or raise :class:`FormatError` naming the file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        What the file is, for the error message (e.g. ``"surface meta.json"``).

    Returns
    -------
    Any
        The parsed value.

    Raises
    ------
    FormatError
        Missing, unreadable, not UTF-8, empty, or not valid JSON (with the line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, f"{what} is missing", "create it (see docs of the format)") from None
    except OSError as exc:
        raise FormatError(path, f"cannot read {what}: {exc.strerror}", "check permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(path, f"{what} is not UTF-8 text", "rewrite it as UTF-8 JSON") from None
    if not text.strip():
        raise FormatError(path, f"{what} is empty", "restore it from a backup or rewrite it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          "fix the syntax or restore the file") from None


def umask_mode(base: int = 0o666) -> int:
    """``base`` with the process umask applied — the mode ``open()``/``mkdir()`` would give a new file
    (``mkstemp``/``mkdtemp`` use 0600/0700 instead, which would hide annotators' files from their group)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to a unique temp file in the same directory, fsync (unless ``sync`` is False:
    throw-away data such as synthetic collections), then ``os.replace``.

    Never uses ``meta.json.tmp`` (VC3D's own temp name).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.vcd-", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fdatasync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, sync: bool = True) -> None:
    """Write ``obj`` as VC-formatted JSON (:func:`vc_dumps`) atomically: temp file, then rename.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place.
    obj : Any
        JSON-serialisable; numpy values become Python ones, NaN / inf become ``null`` (as VC writes them).
    sync : bool
        fsync before the rename (False: throw-away data, see :func:`atomic_write_bytes`).
    """
    atomic_write_bytes(path, vc_dumps(obj).encode("utf-8"), sync)
