"""Shared fixtures: small synthetic scrolls (made once per session, copied per test when mutated)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vcd.synth import make_scroll


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
