"""The daemon's reconcile repairs one-sided links (A lists B, B does not list A; issue 15 item 2, villa#846)."""

import json
import math

from vcd.formats.overlaps import asymmetric_links, read_own_overlaps

from .test_daemon import put_patch

RECONCILE = """
[schedule]
expansion = false
reconcile_seconds = 1
[daemon]
lease_seconds = 3
shutdown_timeout = 2
debounce_seconds = 0.3
"""


def _one_sided(a, b):
    """Write ``a``'s overlapping.json listing ``b`` only (as VC3D can leave it)."""
    (a / "overlapping.json").write_text(json.dumps({"overlapping": [b.name]}))


def test_start_and_periodic_reconcile_repair_one_sided_links(daemon_factory):
    d = daemon_factory(RECONCILE)
    paths = d.volpkg / "paths"
    # three patches on different wraps: the overlap jobs never link them, only the repair does
    a = put_patch(d.volpkg, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    b = put_patch(d.volpkg, "auto_grown_20250101000000002", 2.0 + 2 * math.pi, 3.0 + 2 * math.pi, 20, 60)
    c = put_patch(d.volpkg, "auto_grown_20250101000000003", 2.0 + 4 * math.pi, 3.0 + 4 * math.pi, 20, 60)
    _one_sided(a, b)  # left by another tool while the daemon was down
    assert asymmetric_links(paths) == [(a.name, b.name)]

    d.start()  # the start-up reconcile repairs it
    d.wait_for(lambda: d.events("links_repaired"), "links_repaired at start")
    first = d.events("links_repaired")[0]
    assert first["count"] == 1
    assert a.name in read_own_overlaps(b)

    # written while the daemon runs: the watcher ignores overlapping.json, the periodic reconcile repairs it
    d.wait_for(lambda: all(j["state"] == "done" for j in d.queue().list(kind="overlap", limit=100)),
               "overlap jobs done")
    _one_sided(c, a)
    d.wait_for(lambda: len(d.events("links_repaired")) >= 2, "links_repaired by the periodic reconcile")
    assert d.events("links_repaired")[1]["count"] == 1
    assert c.name in read_own_overlaps(a) and b.name in read_own_overlaps(a)
    assert asymmetric_links(paths) == []
    assert d.stop() == 0
