"""A small synthetic scroll ready for autoseg: (z, y, x) = (64, 128, 128), medium preset, with the
seed.json / expand.json `vcd synth` writes and a vcd.toml that caps growth at 40 patches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vcd.synth import load_truth, make_scroll
from vcd.synth.generate import write_grow_params

TOML = """[daemon]
workers = 2
lease_seconds = 30
shutdown_timeout = 10
debounce_seconds = 0.3
[schedule]
max_patches = 40
interval_seconds = 1.0
[autoseg]
interval_seconds = 2.0
"""


@pytest.fixture(scope="session")
def autoseg_scroll(tmp_path_factory) -> Path:
    out = make_scroll(tmp_path_factory.mktemp("autoseg") / "small.volpkg", shape=(64, 128, 128), preset="medium",
                      seed=0)
    write_grow_params(out, load_truth(out))
    (out / "vcd.toml").write_text(TOML)
    return out


@pytest.fixture
def autoseg_copy(autoseg_scroll, tmp_path) -> Path:
    dst = tmp_path / "scroll.volpkg"
    shutil.copytree(autoseg_scroll, dst, symlinks=True)
    return dst
