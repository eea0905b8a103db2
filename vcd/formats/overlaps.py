"""The overlap graph between surfaces of one directory.

Reads all three forms: ``overlapping.json`` (current VC), the legacy ``overlapping/`` directory of
empty files (Nov 2024 – Jul 2025) and the tutorial's ``overlaps/`` directory of symlinks. Writes
only ``overlapping.json`` (sorted names, both endpoints), under the surface lock, tmp + rename;
a legacy directory is kept in sync only where one already exists.

Links are read as **symmetric**: VC can leave ``A → B`` without ``B → A`` (villa#846), so
:func:`read_overlaps` returns a surface's own list plus every sibling that lists it (the reverse
links come from a per-directory index refreshed by file stats, so repeated calls are cheap).
:func:`asymmetric_links` finds the one-sided links and :func:`repair_links` writes the missing
side (``vcd seg-add-overlap --repair``; a daemon's reconcile can call it as is).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..errors import FormatError
from .jsonio import atomic_write_json, read_json
from .locks import dir_lock
from .volpkg import resolves_outside

#: VC3D's default ``tgt_overlap_count``: the links (entries in ``overlapping.json``) a patch aims for.
#: The grower's default (``GrowParams``) and the previews' when no target is passed; the daemon's
#: value is :func:`vcd.daemon.config.tgt_overlap_count`.
TGT_OVERLAP_COUNT = 20

LEGACY_DIRS = ("overlapping", "overlaps")


def read_overlaps(surface_dir: str | os.PathLike, strict: bool = False, symmetric: bool = True) -> set[str]:
    """Names of the surfaces this one overlaps (a set; names, not paths).

    Parameters
    ----------
    surface_dir : str or os.PathLike
        The surface directory (its ``overlapping.json`` and legacy link directories).
    strict : bool
        A malformed ``overlapping.json`` raises :class:`FormatError` when True, else counts as empty.
    symmetric : bool
        When True (the default) a sibling that lists this surface counts even if this one's own file
        does not list it back.

    Returns
    -------
    set of str
        Neighbour surface names, never the surface itself.
    """
    surface_dir = Path(surface_dir)
    names = read_own_overlaps(surface_dir, strict)
    if symmetric:
        names |= _reverse_links(surface_dir.parent).get(surface_dir.name, set())
        names.discard(surface_dir.name)
    return names


def read_own_overlaps(surface_dir: str | os.PathLike, strict: bool = False) -> set[str]:
    """Names this surface's own files list (``overlapping.json`` and legacy directories), one-sided."""
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


def _link_stamp(surface_dir: str) -> tuple | None:
    """Change stamp of a surface's own link files (None if it has none)."""
    stamp = []
    for f in ("overlapping.json",) + LEGACY_DIRS:
        try:
            st = os.stat(os.path.join(surface_dir, f))
            stamp.append((f, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            pass
    return tuple(stamp) or None


_REVERSE: dict[str, dict[str, tuple]] = {}   #: parent -> {name: (stamp, own names)}
_REVERSE_LOCK = threading.Lock()


def own_links(parent: str | os.PathLike) -> dict[str, set[str]]:
    """``{name: names its own files list}`` for every surface directory in ``parent`` (cached by file stats)."""
    parent = os.fspath(parent)
    try:
        entries = [e for e in os.scandir(parent)
                   if not e.name.startswith(".") and e.is_dir() and not resolves_outside(e.path)]
    except OSError:
        return {}
    with _REVERSE_LOCK:
        old = _REVERSE.get(parent, {})
    new = {}
    for e in entries:
        stamp = _link_stamp(e.path)
        if stamp is None:
            continue
        hit = old.get(e.name)
        new[e.name] = hit if hit is not None and hit[0] == stamp else (stamp, read_own_overlaps(e.path))
    with _REVERSE_LOCK:
        _REVERSE[parent] = new
    return {n: set(v[1]) for n, v in new.items()}


def link_sets(parent: str | os.PathLike) -> dict[str, set[str]]:
    """:func:`read_overlaps` (symmetric) of every surface in ``parent`` at once: ``{name: names}``
    (surfaces with no link in either direction are absent). One pass over the directory — a loop
    calling :func:`read_overlaps` per surface re-reads every surface's link stamps each time."""
    own = own_links(parent)
    out = {a: set(bs) for a, bs in own.items()}
    for a, bs in own.items():
        for b in bs:
            out.setdefault(b, set()).add(a)
    for a, bs in out.items():
        bs.discard(a)
    return out


def linked_to(links, seed) -> set:
    """Every node reachable from ``seed`` through the overlap graph ``links`` (``links[node]``: the
    nodes linked to it — a list of sets indexed by patch number, or a dict by name that holds every
    node it names), ``seed`` included. A trace never leaves this piece of the graph."""
    seen, todo = {seed}, [seed]
    while todo:
        for j in links[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def _reverse_links(parent: Path) -> dict[str, set[str]]:
    rev: dict[str, set[str]] = {}
    for a, bs in own_links(parent).items():
        for b in bs:
            rev.setdefault(b, set()).add(a)
    return rev


def asymmetric_links(parent: str | os.PathLike) -> list[tuple[str, str]]:
    """One-sided links ``(a, b)``: ``a`` lists ``b``, ``b`` exists but does not list ``a`` (sorted)."""
    parent = Path(parent)
    own = own_links(parent)
    out = []
    for a, bs in own.items():
        for b in bs:
            if b != a and a not in own.get(b, set()) and (parent / b).is_dir():
                out.append((a, b))
    return sorted(out)


def repair_links(parent: str | os.PathLike, names: list[str] | None = None) -> list[tuple[str, str]]:
    """Write the missing side of every one-sided link in ``parent`` (or only those touching ``names``).

    Each write is under ``b``'s lock and only adds names, so it is safe while other writers link; a
    daemon's reconcile can call it.

    Parameters
    ----------
    parent : str or os.PathLike
        The directory holding the surfaces (``paths/``).
    names : list of str, optional
        Repair only links touching these surfaces (default: all).

    Returns
    -------
    list of tuple of str
        The repaired ``(a, b)`` pairs (``b``'s file now lists ``a``).
    """
    pairs = asymmetric_links(parent)
    if names is not None:
        keep = set(names)
        pairs = [(a, b) for a, b in pairs if a in keep or b in keep]
    by_b: dict[str, set[str]] = {}
    for a, b in pairs:
        by_b.setdefault(b, set()).add(a)
    for b, adds in sorted(by_b.items()):
        _write_links(Path(parent) / b, adds)
    return pairs


def _write_links(surface_dir: Path, add: set[str], remove: set[str] = frozenset()) -> None:
    if resolves_outside(surface_dir):  # a symlink out of paths/: never written into (issue 31)
        raise FormatError(surface_dir, "surface resolves (through a symlink) outside its directory; its links "
                          "are not written", "copy the surface into the volpkg instead of linking to it")
    with dir_lock(surface_dir):
        current = read_own_overlaps(surface_dir)
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
        if (self.parent / b).is_dir() and not resolves_outside(self.parent / b):
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
    """Add symmetric edges ``a <-> b`` for every ``b`` in ``others``.

    Each side's ``overlapping.json`` is rewritten under that surface's lock, only adding names.

    Parameters
    ----------
    parent : str or os.PathLike
        The directory holding the surfaces (``paths/``).
    a : str
        The surface name.
    others : list or set of str
        Names of the surfaces ``a`` overlaps.
    """
    with Linker(parent, a) as linker:
        for b in sorted(others):
            linker.add(b)
