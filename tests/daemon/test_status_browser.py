"""The status page in a real browser (issue 30): headless Chromium (Debian's ``chromium``) loads the page a
real daemon serves on a synthetic scroll after a real trace, and its DOM holds the queue table, the trace's
row and a QA map that decoded (``naturalWidth > 0``). Heavy (a trace, a winding job, a browser start);
skipped when no Chromium is installed (``apt-get install chromium``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from vcd import jobs
from vcd.daemon.status_page import REFRESH_S
from vcd.grow.linking import link_new_patch

from .conftest import QUIET, WAIT_CAP
from .test_daemon import put_patch

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

pytestmark = [pytest.mark.heavy, pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")]


def chromium(tmp_path, url, *args) -> subprocess.CompletedProcess:
    """One headless Chromium run on ``url`` (its own profile in ``tmp_path``; --no-sandbox: tests may run as root).
    The virtual-time budget (the page's load, images and script) stays under the page's meta refresh: past
    it, Chromium reloads the page and keeps spending virtual time for ever."""
    budget = int(REFRESH_S * 1000 / 2)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--virtual-time-budget={budget}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_CAP)


def test_status_page_in_headless_chromium_after_a_real_trace(daemon_factory, tmp_path):
    d = daemon_factory(QUIET + '\n[pipeline]\nafter_trace = ["winding"]\n')
    vp = d.volpkg
    names = [put_patch(vp, f"auto_grown_202501010000000{i:02d}", 3.0 + 0.25 * i, 3.9 + 0.25 * i, 10, 80).name
             for i in range(12)]
    for n in names:
        link_new_patch(vp / "paths", n)
    d.start()
    q = d.queue()
    jid = jobs.submit(q, "trace", {"volume": str(vp / "volumes" / "synth_pred.zarr"), "src_dir": str(vp / "paths"),
                                   "tgt_dir": str(vp / "traces"), "seed": str(vp / "paths" / names[0]), "step": 2,
                                   "src_step": 4, "consensus_default_th": 4, "inlier_base_threshold": 8})
    d.wait_for(lambda: q.get(jid)["state"] in ("done", "failed"), "trace job")
    assert q.get(jid)["state"] == "done", q.get(jid)["error"]
    trace = next(p for p in (vp / "traces").iterdir() if p.name.startswith("auto_trace_"))
    d.wait_for(lambda: (q.by_dedup_key(f"winding:{trace.name}") or {}).get("state") == "done", "winding job")
    d.wait_for(lambda: (vp / ".vcd" / "previews" / "density.png").exists(), "density preview")
    url = f"http://127.0.0.1:{d.port}/"
    r = chromium(tmp_path, url, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert '<table id="queue">' in dom and '<td class="l">trace</td>' in dom  # the queue table, per kind
    assert re.search(r'<tr class="trace">.*?' + trace.name, dom, re.S)  # the trace's row
    qa = re.search(r'<img class="thumb qa"[^>]*>', dom)
    assert qa, dom[-3000:]
    width = re.search(r'data-natural-width="(\d+)"', qa.group(0))
    assert width and int(width.group(1)) > 0, qa.group(0)  # the QA map decoded in the browser
    for img in re.findall(r"<img[^>]*>", dom):  # every picture on the page loaded
        assert 'data-natural-width="0"' not in img, img
    for n in names[:2]:
        assert n in dom
    shot = tmp_path / "status_page.png"
    r = chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,1800")
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    assert d.stop() == 0
