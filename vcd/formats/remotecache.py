"""A bounded on-disk cache of what remote zarr stores return, shared by processes, kept across restarts.

zarr-python reads a remote volume through :class:`zarr.storage.FsspecStore` (fsspec does the
transport). :class:`CachedStore` wraps that store: every object it reads (chunk, metadata file, or a
byte range of a shard) is kept as one file under ``DiskCache.dir``, named by the SHA-1 of its URL
(and byte range). An object the server reports absent (HTTP 404) is kept as an empty ``.none``
marker, so a volume read once opens and reads offline. fsspec's own ``simplecache``/``filecache``
are not used: they write the download in place (a dropped connection leaves a torn file that is
then served as data) and are not size-bounded.

**Bounded**: the files never add up to more than ``max_bytes``. A running total is kept in
``.size``; every write takes an exclusive ``flock`` on ``.lock``, evicts the least recently used
files (oldest modification time; a hit touches its file) down to 90 % of the cap when the new file
would not fit, writes to a temp file, renames it into place and adds its size. Any number of
processes may share a cache directory: readers never see a partial file, and a file that vanishes
(evicted by another process, deleted by hand) is a miss, fetched again.

The cache assumes remote volumes do not change (scroll volumes are published once); to see a
changed volume, delete the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

from zarr.abc.store import ByteRequest, RangeByteRequest, OffsetByteRequest, SuffixByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore  # zarr-python 3's base for store wrappers

from .jsonio import umask_mode

log = logging.getLogger("vcd.formats.remotecache")

DEFAULT_MAX_BYTES = 4 * 2 ** 30      #: default cap: 4 GiB
LOW_WATER = 0.9                      #: eviction frees down to this share of the cap
STALE_TMP_S = 3600.0                 #: temp files older than this (a crashed writer) are deleted
ABSENT = object()                    #: :meth:`DiskCache.get`'s answer for an object known to be absent


def _range_tag(byte_range: ByteRequest | None) -> str:
    if byte_range is None:
        return ""
    if isinstance(byte_range, RangeByteRequest):
        return f"#{byte_range.start}-{byte_range.end}"
    if isinstance(byte_range, OffsetByteRequest):
        return f"#{byte_range.offset}-"
    if isinstance(byte_range, SuffixByteRequest):
        return f"#-{byte_range.suffix}"
    return f"#{byte_range!r}"


class DiskCache:
    """Files under ``dir`` (one per remote object), at most ``max_bytes`` bytes in all."""

    def __init__(self, dir: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(dir)
        self.max_bytes = int(max_bytes)
        self.hits = 0      # objects served from disk, for tests and benchmarks
        self.misses = 0    # objects fetched
        self.warned = False
        self._mode = umask_mode()   # read once: it briefly changes the process umask
        self.dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DiskCache({str(self.dir)!r}, max_bytes={self.max_bytes})"

    def _path(self, name: str) -> Path:
        return self.dir / hashlib.sha1(name.encode()).hexdigest()

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> bytes | object | None:
        """The bytes kept for ``name``, :data:`ABSENT` if the object is known absent, None on a miss."""
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if path.with_suffix(".none").exists():
                self.hits += 1
                return ABSENT
            self.misses += 1
            return None
        with contextlib.suppress(OSError):  # LRU: a hit makes the file young (gone meanwhile: fine)
            os.utime(path)
        self.hits += 1
        return data

    def known(self, name: str) -> bool | None:
        """True if ``name`` is kept, False if it is known absent, None if the cache does not know."""
        path = self._path(name)
        if path.exists():
            return True
        return False if path.with_suffix(".none").exists() else None

    # ------------------------------------------------------------------ writing
    def put(self, name: str, data: bytes | None) -> None:
        """Keep ``data`` for ``name`` (None: the object is absent). Objects over the cap are not kept."""
        size = 0 if data is None else len(data)
        if size > self.max_bytes * LOW_WATER:
            return
        path = self._path(name)
        target = path.with_suffix(".none") if data is None else path
        with self._locked():
            total = self._total()
            if total + size > self.max_bytes:
                total = self._evict(int(self.max_bytes * LOW_WATER) - size)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.dir)
            try:
                os.fchmod(fd, self._mode)   # as any new file (mkstemp's 0600 would hide it from other users)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data or b"")
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._set_total(total + size)

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive across threads and processes (``flock`` on a fresh descriptor each time)."""
        with open(self.dir / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _total(self) -> int:
        """Bytes held (from ``.size``; counted from the files when missing or unreadable). Lock held."""
        try:
            return int((self.dir / ".size").read_text())
        except (OSError, ValueError):
            return sum(size for _, size, _ in self._entries())

    def _set_total(self, total: int) -> None:
        (self.dir / ".size").write_text(str(int(total)))

    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, bytes, path) of every cached file; stale temp files are deleted on the way."""
        out = []
        now = time.time()
        with os.scandir(self.dir) as it:
            for e in it:
                try:
                    if e.name in (".lock", ".size") or not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                    if e.name.startswith(".tmp-"):
                        if now - st.st_mtime > STALE_TMP_S:
                            os.unlink(e.path)
                        continue
                    out.append((st.st_mtime, st.st_size, e.path))
                except FileNotFoundError:  # deleted by someone else meanwhile
                    continue
        return out

    def _evict(self, target: int) -> int:
        """Delete least recently used files until at most ``target`` bytes remain; returns what remains."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
            freed += 1
        if freed:
            log.debug("%s: evicted %d files, %d bytes remain", self.dir, freed, total)
        return max(total, 0)

    def size_on_disk(self) -> int:
        """Bytes of all cached files, counted from the directory (for tests)."""
        return sum(size for _, size, _ in self._entries())


class CachedStore(WrapperStore[Store]):
    """A read-only zarr store over ``store`` (rooted at ``url``) that keeps what it reads in ``cache``."""

    def __init__(self, store: Store, cache: DiskCache, url: str):
        super().__init__(store)
        self.cache = cache
        self.url = url.rstrip("/")

    def _with_store(self, store: Store) -> "CachedStore":
        return type(self)(store, self.cache, self.url)

    def __repr__(self) -> str:
        return f"CachedStore({self.url!r}, {self.cache!r})"

    def _name(self, key: str, byte_range: ByteRequest | None = None) -> str:
        return f"{self.url}/{key}{_range_tag(byte_range)}"

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
                  ) -> Buffer | None:
        """The object ``key`` from the disk cache, else from the wrapped store (then kept)."""
        name = self._name(key, byte_range)
        kept = await asyncio.to_thread(self.cache.get, name)
        if kept is ABSENT:
            return None
        if kept is not None:
            return prototype.buffer.from_bytes(kept)
        buf = await self._store.get(key, prototype, byte_range)  # transport errors propagate: nothing kept
        try:
            await asyncio.to_thread(self.cache.put, name, None if buf is None else buf.to_bytes())
        except OSError as exc:  # a full or read-only disk: read on without keeping, say so once
            if not self.cache.warned:
                self.cache.warned = True
                log.warning("%s: remote chunks are not kept (%s)", self.cache.dir, exc.strerror or exc)
        return buf

    async def exists(self, key: str) -> bool:
        known = self.cache.known(self._name(key))
        return known if known is not None else await self._store.exists(key)
