"""The status page (issue 30): served by the real daemon on the /metrics listener, its content over real
HTTP, images read-only from the volpkg, and no path out of it (``..``, absolute paths, symlinks).

The browser test (headless Chromium on a real trace) is ``tests/daemon/test_status_browser.py``, heavy."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from vcd import jobs
from vcd.daemon.status_page import resolve_image, split_reason
from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth
from vcd.trace import qa

from .conftest import QUIET
from .test_daemon import put_patch


def put_trace_with_qa(vp, name, patches):
    """A trace in ``traces/`` as the tracer writes it: provenance naming ``patches``, ``qa.tif``-style
    summary in meta and a real ``qa.png`` (:func:`vcd.trace.qa.png`)."""
    t = load_truth(vp)
    qmap = np.zeros((10, 10), np.float32)
    qmap[4, 4] = 0.9  # one suspicious corner of 100
    prov = {"version": 1, "seed": patches[0], "patches": {p: {"mask_sha1": None, "tags": [], "corners": 5}
                                                          for p in patches}}
    return write_surface(vp / "traces" / name, t.sample_grid(t.theta0 + 3, t.theta0 + 5, 20, 60, 4),
                         {"scale": [0.25, 0.25], "source": "vcd_trace", "area_cm2": 0.0123, "qa": qa.summary(qmap)},
                         extra_files={"vcd_provenance.json": json.dumps(prov).encode(),
                                      "qa.png": qa.png(qmap, name)})


def get(port, path):
    """(status, body) of a GET sent exactly as written (http.client does not normalise ``..``)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


ESCAPES = ["/img/previews/../../config.json", "/img/previews/%2e%2e/%2e%2e/config.json",
           "/img/previews/..%2f..%2fconfig.json", "/img/previews//etc/passwd", "/img/previews/%2fetc%2fpasswd",
           "/img/previews/%2Fetc%2Fhostname.png", "/img/trace/../../config.json", "/img/trace/T/../meta.json",
           "/img/trace/T/meta.json", "/img/trace/T/z.tif", "/img/trace/T//qa.png", "/img/trace/%2e%2e/qa.png",
           "/img/autoseg/../config.json", "/img/autoseg/autoseg_report.json", "/etc/passwd", "/config.json",
           "/img/previews/.hidden.png", "/img/previews/outside.png", "/img/trace/outside_trace/qa.png",
           "/img/previews/dir.png", "/img/previews/missing.png"]


def _escape_fixture(vp, outside):
    """Bait for :data:`ESCAPES`: a PNG outside the volpkg reached by a symlinked preview and a symlinked
    trace directory, a hidden preview, a directory named like a PNG."""
    (outside / "qa.png").write_bytes(b"\x89PNG outside")
    prev = vp / ".vcd" / "previews"
    prev.mkdir(parents=True, exist_ok=True)
    (prev / "outside.png").symlink_to(outside / "qa.png")
    (prev / ".hidden.png").write_bytes(b"\x89PNG hidden")
    (prev / "dir.png").mkdir()
    (prev / "inside.png").symlink_to(vp / "traces" / "T" / "qa.png")  # a link that stays inside is fine
    (vp / "traces" / "outside_trace").symlink_to(outside, target_is_directory=True)


def test_image_routes_refuse_every_path_out_of_the_volpkg(tmp_path):
    """:func:`resolve_image` in-process: only the fixed routes, plain names, files inside the volpkg."""
    vp = tmp_path / "x.volpkg"
    (vp / "traces" / "T").mkdir(parents=True)
    (vp / "config.json").write_text("{}")
    (vp / "traces" / "T" / "qa.png").write_bytes(b"\x89PNG qa")
    (vp / "traces" / "T" / "meta.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    _escape_fixture(vp, outside)
    for path in ESCAPES:
        assert resolve_image(vp, path) is None, path
    assert resolve_image(vp, "/img/trace/T/qa.png") == (vp / "traces" / "T" / "qa.png").resolve()
    assert resolve_image(vp, "/img/previews/inside.png") == (vp / "traces" / "T" / "qa.png").resolve()


def test_split_reason_keeps_the_fix_of_an_input_error():
    assert split_reason("/v/paths/p: seed patch not found (no meta.json). Fix: pass a patch directory") == \
        ("/v/paths/p: seed patch not found (no meta.json)", "pass a patch directory")
    assert split_reason("Traceback (most recent call last):\n  File x\nValueError: bad") == ("ValueError: bad", "")


def test_daemon_serves_the_status_page_with_metrics_images_and_no_escapes(daemon_factory, tmp_path):
    """A real daemon: ``/`` and ``/status`` render every section from the queue and the files, ``/metrics``
    still answers on the same port, a trace's QA map and the density preview are served as PNGs, every
    escape attempt is a 404, and ``vcdctl status --open`` prints the page's URL."""
    d = daemon_factory(QUIET + '\n[pipeline]\nafter_trace = ["winding"]\n').start()
    vp = d.volpkg
    names = [put_patch(vp, f"auto_grown_2025010100000000{i}", 2.0 + 0.5 * i, 3.0 + 0.5 * i, 20, 60).name
             for i in range(3)]
    trace = put_trace_with_qa(vp, "auto_trace_20250101000000050", names[:2])
    q = d.queue()
    bad = jobs.submit(q, "trace", {"volume": str(vp / "volumes" / "synth_pred.zarr"), "src_dir": str(vp / "paths"),
                                   "tgt_dir": str(vp / "traces"), "seed": str(vp / "paths" / "no_such_patch")})
    d.wait_for(lambda: q.get(bad)["state"] == "failed", "the bad trace job fails")
    d.wait_for(lambda: (q.by_dedup_key(f"winding:{trace.name}") or {}).get("state") == "done", "winding job")

    def page():
        status, body = get(d.port, "/")
        assert status == 200
        return body.decode()
    q.set_kv("autoseg_state", {"phase": "tracing", "done": False, "patches": 3, "traces": 1,
                               "final_sheets": [trace.name]})
    # while autoseg runs (no report yet) the tick's current final sheets are listed, linked to their folders
    d.wait_for(lambda: 'id="sheets-live"' in page() and (vp / "traces" / trace.name).resolve().as_uri() in page(),
               "the live final sheets")
    q.set_kv("autoseg_coverage", [{"t": 1000.0, "coverage": 0.1, "on_patch": 0.3},
                                  {"t": 1060.0, "coverage": 0.4, "on_patch": 0.5}])
    (vp / "traces" / "autoseg_report.json").write_text(json.dumps(  # as vcd.daemon.autoseg.write_report writes it
        {"final_sheets": [{"name": trace.name, "area_cm2": 0.0123, "fused_from": [trace.name]}],
         "traced_area_cm2": 0.0123, "coverage_of_predicted_surface": 0.4}))
    (vp / "traces" / "autoseg_report.png").write_bytes((trace / "qa.png").read_bytes())
    d.wait_for(lambda: "3 patches" in page() and "winding.png" in page(), "page shows the patches and the winding")
    html = page()
    assert get(d.port, "/status")[0] == 200
    for section in ('id="daemon"', 'id="queue"', 'id="collection"', 'id="traces"', 'id="autoseg"'):
        assert section in html, section
    assert "running</b>" in html and "2 busy" not in html and "of 2 (local)" in html
    assert '<td class="l">trace</td>' in html and '<td class="l">winding</td>' in html  # queue rows per kind
    assert "seed patch not found (no meta.json)" in html and "pass a patch directory" in html  # reason + fix
    assert '<tr class="trace">' in html and trace.name in html and "0.0123" in html
    assert "99.0%" in html  # jump-free share: 1 suspicious corner of 100
    assert f'src="/img/trace/{trace.name}/qa.png"' in html
    for n in names[:2]:
        assert (vp / "paths" / n).resolve().as_uri() in html  # patches used, linked to their folders
    assert names[2] not in html.split('id="traces"')[1].split("</table>")[0]
    assert 'id="autoseg-phase">tracing<' in html and 'id="coverage-chart"' in html and "40.0%" in html
    assert 'id="sheets"' in html and "Final sheets (1, 0.0123 cm²" in html
    assert 'src="/img/autoseg/autoseg_report.png"' in html
    assert get(d.port, "/img/autoseg/autoseg_report.png") == (200, (trace / "qa.png").read_bytes())
    # images: the trace's QA map and (once drawn) the density preview, as real PNGs
    status, body = get(d.port, f"/img/trace/{trace.name}/qa.png")
    assert status == 200 and body == (trace / "qa.png").read_bytes()
    status, body = get(d.port, f"/img/trace/{trace.name}/winding.png")
    assert status == 200 and body.startswith(b"\x89PNG")
    d.wait_for(lambda: (vp / ".vcd" / "previews" / "density.png").exists(), "density preview")
    d.wait_for(lambda: 'id="density"' in page(), "density preview on the page")
    status, body = get(d.port, "/img/previews/density.png")
    assert status == 200 and body.startswith(b"\x89PNG")
    # the same listener still serves /metrics
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=60).read().decode()
    assert "vcd_jobs{" in metrics and "vcd_patches 3.0" in metrics
    # nothing from the URL reaches a file outside the fixed routes
    (vp / "traces" / "T").mkdir()
    (vp / "traces" / "T" / "qa.png").write_bytes(b"\x89PNG qa")
    outside = tmp_path / "outside"
    outside.mkdir()
    _escape_fixture(vp, outside)
    for path in ESCAPES:
        assert get(d.port, path)[0] == 404, path
    assert get(d.port, "/img/previews/inside.png") == (200, b"\x89PNG qa")
    # vcdctl status --open prints the URL (no display here: nothing is opened)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(vp), "status", "--open"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"http://127.0.0.1:{d.port}/"
    assert get(d.port, "/")[0] == 200
    assert d.stop() == 0


def test_status_open_without_a_daemon_says_how_to_start_one(scroll_copy):
    r = subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(scroll_copy), "status", "--open"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "no status page" in r.stderr and "vcd daemon" in r.stderr, r.stderr
