"""Shared fixtures: small synthetic scrolls (made once per session, copied per test when mutated)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from vcd.synth import make_scroll


def sigint_default() -> None:
    """``preexec_fn`` for a child process a test will Ctrl-C: SIGINT back to its default action.

    A suite started with SIGINT ignored (``nohup``, ``cmd &``, a scheduled job) passes the ignore on
    to every child through ``exec``, and Python then installs no ``KeyboardInterrupt`` handler, so the
    child would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def medium_scroll(tmp_path_factory) -> Path:
    """A read-only medium-preset scroll, (z, y, x) = (96, 128, 128), with CT volume."""
    return make_scroll(tmp_path_factory.mktemp("scrolls") / "medium.volpkg", shape=(96, 128, 128),
                       preset="medium", seed=1)


@pytest.fixture
def scroll_copy(medium_scroll, tmp_path) -> Path:
    """A private, writable copy of :func:`medium_scroll`."""
    dst = tmp_path / "scroll.volpkg"
    shutil.copytree(medium_scroll, dst, symlinks=True)
    return dst


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A read-only directory ``name`` that ``build(dir)`` fills, made once per test run and shared by
    the pytest-xdist workers (and by fixtures of one worker that import it under another name).

    The first caller builds it in a staging directory under a file lock and renames it into place;
    the others wait on the lock (they would have spent the same time building it) and reuse it.
    Whatever ``build`` writes must not record its own absolute path (the directory is renamed)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, shared by its workers (never by another run)
    root = base / "built_once"
    root.mkdir(exist_ok=True)
    done = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            stage = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
            build(stage)
            os.rename(stage, done)
    return done


#: The longest test files (each 25-65 s on an idle 2-core machine, docs/capacity.md), handed out
#: first: ``--dist loadfile`` gives files to the workers in collection order, so a long file left
#: for last kept one worker busy for up to ~20 s after the other had finished.
LONGEST_FIRST = ("tests/daemon/test_daemon.py", "tests/trace/test_trace.py", "tests/trace/test_follow_patches.py",
                 "tests/reliability/test_faults.py", "tests/grow/test_realistic.py", "tests/reliability/test_soak.py",
                 "tests/grow/test_thickness.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
