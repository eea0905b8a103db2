"""Advisory file locks (``fcntl.flock``) serialising our own read-modify-write cycles."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike, name: str = ".vcd.lock"):
    """Hold an exclusive lock on ``directory/name`` for the duration of the ``with`` block.

    The lock file is a dot-file VC3D ignores. Works across processes on one machine and on NFS
    with lockd; see docs/capacity.md for cluster notes.
    """
    path = Path(directory) / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
