"""Remote-volume tests keep their disk cache in the test's own directory, not in ~/.cache/vcd."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_remote_cache(tmp_path, monkeypatch):
    """``$VCD_CACHE_DIR`` (inherited by `vcd` subprocesses) points into ``tmp_path``."""
    monkeypatch.setenv("VCD_CACHE_DIR", str(tmp_path / "vcd-cache"))
    monkeypatch.delenv("VCD_REMOTE_CACHE_BYTES", raising=False)
