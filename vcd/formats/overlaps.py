"""The overlap graph between surfaces of one directory.

Reads all three forms: ``overlapping.json`` (current VC), the legacy ``overlapping/`` directory of
empty files (Nov 2024 – Jul 2025) and the tutorial's ``overlaps/`` directory of symlinks. Writes
only ``overlapping.json`` (sorted names, both endpoints), under the surface lock, tmp + rename;
a legacy directory is kept in sync only where one already exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FormatError
from .jsonio import atomic_write_json, read_json
from .locks import dir_lock

LEGACY_DIRS = ("overlapping", "overlaps")


def read_overlaps(surface_dir: str | os.PathLike, strict: bool = False) -> set[str]:
    """Names of the surfaces this one overlaps (a set; names, not paths).

    A malformed ``overlapping.json`` raises :class:`FormatError` when ``strict``, else counts as empty.
    """
    surface_dir = Path(surface_dir)
    names: set[str] = set()
    jpath = surface_dir / "overlapping.json"
    if jpath.exists():
        try:
            data = read_json(jpath, "overlapping.json")
            lst = data.get("overlapping", []) if isinstance(data, dict) else None
            if not isinstance(lst, list) or not all(isinstance(n, str) for n in lst):
                raise FormatError(jpath, "\"overlapping\" must be a list of names",
                                  "rewrite it as {\"overlapping\": [names]} or delete it and relink")
            names.update(lst)
        except FormatError:
            if strict:
                raise
    for legacy in LEGACY_DIRS:
        d = surface_dir / legacy
        if d.is_dir() and not d.is_symlink():
            for entry in os.scandir(d):
                if entry.name.startswith("."):
                    continue
                names.add(entry.name)  # an empty file or a (possibly dangling) symlink named after the peer
    names.discard(surface_dir.name)
    return names


def _write_links(surface_dir: Path, add: set[str], remove: set[str] = frozenset()) -> None:
    with dir_lock(surface_dir):
        current = read_overlaps(surface_dir)
        new = (current | add) - set(remove)
        new.discard(surface_dir.name)
        jpath = surface_dir / "overlapping.json"
        if new != current or not jpath.exists():
            atomic_write_json(jpath, {"overlapping": sorted(new)})
        for legacy in LEGACY_DIRS:  # keep an existing legacy directory in sync
            d = surface_dir / legacy
            if d.is_dir() and not d.is_symlink():
                for name in add - current:
                    entry = d / name
                    if legacy == "overlaps":
                        if not entry.is_symlink():
                            entry.symlink_to(Path("..") / ".." / name)
                    else:
                        entry.touch()


def link(parent: str | os.PathLike, a: str, others: list[str] | set[str]) -> None:
    """Add symmetric edges ``a <-> b`` for every ``b`` in ``others`` (surfaces in ``parent``)."""
    parent = Path(parent)
    others = sorted(o for o in others if o != a and (parent / o).is_dir())
    if len(others) > 2:  # independent files, each under its own lock: write them concurrently
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(32, len(others))) as ex:
            list(ex.map(lambda b: _write_links(parent / b, {a}), others))
    else:
        for b in others:
            _write_links(parent / b, {a})
    _write_links(parent / a, set(others))


def unlink_all(parent: str | os.PathLike, a: str) -> None:
    """Remove ``a`` from its neighbours' lists (e.g. when ``a`` was deleted)."""
    parent = Path(parent)
    for b in read_overlaps(parent / a) if (parent / a).is_dir() else []:
        if (parent / b).is_dir():
            _write_links(parent / b, set(), {a})
