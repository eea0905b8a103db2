"""A broken prediction volume leaves the daemon running (issue 8, malformed inputs): one clear log line
naming the file and the fix, linking and everything else go on, growth resumes once the volume is fixed."""

from __future__ import annotations

import shutil

import pytest

from vcd.formats.overlaps import read_overlaps

from ..daemon.test_daemon import put_patch
from ..formats.test_volume import _break

GROWING = """
[schedule]
expansion = true
interval_seconds = 0.5
seed_count = 1
reconcile_seconds = 3600
[daemon]
lease_seconds = 3
shutdown_timeout = 2
debounce_seconds = 0.3
"""


@pytest.mark.parametrize("what,match", [("fill_null", "fill_value is null"), ("float", "not uint8 or uint16"),
                                        ("4d", "3-D"), ("no_meta", "no meta.json")])
def test_broken_volume_leaves_the_daemon_running(daemon_factory, what, match):
    d = daemon_factory(GROWING, workers=1)
    vol = d.volpkg / "volumes" / "synth_pred.zarr"
    backup = d.volpkg.parent / "backup.zarr"
    shutil.copytree(vol, backup)
    _break(vol, what)
    (d.volpkg / "volumes" / "notes").mkdir()  # a stray folder is never taken for the volume
    d.start()
    d.wait_for(lambda: d.events("volume_unusable"), "volume_unusable log line")
    line = d.events("volume_unusable")[0]
    assert match in line["error"] and "Fix:" in line["error"] and "synth_pred.zarr" in line["error"], line
    q = d.queue()
    assert not q.list(kind="seed")
    # linking goes on
    put_patch(d.volpkg, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    put_patch(d.volpkg, "auto_grown_20250101000000002", 2.5, 3.5, 30, 70)
    d.wait_for(lambda: read_overlaps(d.volpkg / "paths" / "auto_grown_20250101000000001")
               == {"auto_grown_20250101000000002"}, "linking with a broken volume")
    # logged once, not on every scheduler tick (linking took several 0.5 s ticks)
    assert len(d.events("volume_unusable")) == 1, d.events("volume_unusable")
    # the user fixes the volume: growth resumes without a restart (the fixed copy is moved in whole, as a
    # converter does, so no scheduler tick sees a half-copied volume)
    fixed = d.volpkg.parent / "fixed.zarr"
    shutil.copytree(backup, fixed)
    vol.rename(d.volpkg.parent / "broken.zarr")
    fixed.rename(vol)
    d.wait_for(lambda: q.list(kind="expand") or q.list(kind="seed"), "growth after the fix")
    assert d.events("volume_usable") and d.proc.poll() is None
