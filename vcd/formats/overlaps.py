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


_POOL: tuple = (None, None)   #: (pid, ThreadPoolExecutor) — recreated in a forked child


def _pool():
    global _POOL
    if _POOL[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=32, thread_name_prefix="vcd-link"))
    return _POOL[1]


class Linker:
    """Symmetric edges ``a <-> b`` written as the ``b``'s become known.

    Each ``b``'s file is written at once in a background thread (independent files, each under its
    own lock); ``a``'s own list is written when the ``with`` block ends (also on an error, so the
    edges written so far stay symmetric), then all writes are waited for (the first error is raised)."""

    def __init__(self, parent: str | os.PathLike, a: str):
        self.parent, self.a = Path(parent), a
        self.linked: list[str] = []
        self._seen: set[str] = set()
        self._futures: list = []

    def add(self, b: str) -> None:
        if b == self.a or b in self._seen:
            return
        self._seen.add(b)
        if (self.parent / b).is_dir():
            self.linked.append(b)
            self._futures.append(_pool().submit(_write_links, self.parent / b, {self.a}))

    def __enter__(self) -> "Linker":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or self.linked:
            self._futures.append(_pool().submit(_write_links, self.parent / self.a, set(self.linked)))
        error = None
        for f in self._futures:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                error = error or e
        if error is not None and exc_type is None:
            raise error
        return False


def link(parent: str | os.PathLike, a: str, others: list[str] | set[str]) -> None:
    """Add symmetric edges ``a <-> b`` for every ``b`` in ``others`` (surfaces in ``parent``)."""
    with Linker(parent, a) as linker:
        for b in sorted(others):
            linker.add(b)


def unlink_all(parent: str | os.PathLike, a: str) -> None:
    """Remove ``a`` from its neighbours' lists (e.g. when ``a`` was deleted)."""
    parent = Path(parent)
    for b in read_overlaps(parent / a) if (parent / a).is_dir() else []:
        if (parent / b).is_dir():
            _write_links(parent / b, set(), {a})
