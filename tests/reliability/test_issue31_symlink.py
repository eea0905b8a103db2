"""Issue 31 item 1: a patch in ``paths/`` that is a symlink to a folder outside the volpkg is refused
with one log line and never read or written (nothing outside the volpkg is ever written)."""

from __future__ import annotations

from vcd import jobs
from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth

from ..daemon.test_daemon import put_patch

INSIDE = "auto_grown_20250101000000001"
LINKED = "auto_grown_20250101000000002"


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_patch_symlinked_from_outside_is_refused_and_never_written(daemon_factory, tmp_path):
    d = daemon_factory().start()
    vp = d.volpkg
    t = load_truth(vp)
    shared = tmp_path / "shared"
    shared.mkdir()
    # a complete patch that overlaps the inside one, kept outside and shared by symlink
    write_surface(shared / LINKED, t.sample_grid(t.theta0 + 2.5, t.theta0 + 3.5, 40, 80, 4),
                  {"scale": [0.25, 0.25], "source": "vcd_grow", "area_cm2": 0.01})
    before = _snapshot(shared)
    (vp / "paths" / LINKED).symlink_to(shared / LINKED, target_is_directory=True)
    d.wait_for(lambda: d.events("surface_refused"), "surface_refused log line")
    put_patch(vp, INSIDE, 2.0, 3.0, 20, 60)
    q = d.queue()
    d.wait_for(lambda: any(j["state"] == "done" for j in q.list(kind="overlap")), "the inside patch's overlap job")
    # asked for explicitly (any process that can write the queue can): one line, nothing written
    jid = jobs.submit(q, "overlap", {"paths": str(vp / "paths"), "segment": LINKED})
    d.wait_for(lambda: q.get(jid)["state"] in ("done", "failed"), "overlap job on the symlinked patch")
    job = q.get(jid)
    assert job["state"] == "failed" and "outside" in job["error"] and "\n" not in job["error"], job
    refused = d.events("surface_refused")
    assert len(refused) == 1 and refused[0]["surface"] == LINKED, refused
    assert _snapshot(shared) == before  # no overlapping.json, no .vcd.lock, nothing touched
    assert LINKED not in read_overlaps(vp / "paths" / INSIDE)
    assert "Traceback" not in d.log_text()
    assert d.proc.poll() is None
