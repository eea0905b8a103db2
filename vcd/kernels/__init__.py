"""Numba kernels. Kernels take arrays, never files. Points are (x, y, z); volumes are [z, y, x].

numba's on-disk cache (``cache=True``) checks only the source file of the function it compiled, but a
kernel that calls a kernel of another module (``grow.judge_corner`` → ``sheetband.band_test``)
carries that callee's code in its cache entry. After a ``git pull`` that changes ``sheetband.py``
alone, ``grow.py``'s entries would silently run the old callee. So at import the kernels' sources
are hashed together, and when the hash differs from the one recorded beside the cache, every
kernel cache entry is dropped (numba recompiles once).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_caches() -> None:
    here = Path(__file__).resolve().parent
    cache = here / "__pycache__"
    digest = hashlib.sha1()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    stamp = cache / "vcd-kernels-sources.sha1"
    try:
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for entry in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            entry.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:
        pass  # a read-only install: numba falls back to its own cache locator


_drop_stale_caches()
