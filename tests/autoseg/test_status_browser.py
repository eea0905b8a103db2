"""The status page's autoseg section in a real browser (issue 30): a real daemon with ``[autoseg] enabled``
on a small synthetic scroll runs to done; headless Chromium then shows the phase, the coverage chart of the
predicted surface, the final sheets table (with the wraps their winding jobs measured) and the report's
picture, decoded (``naturalWidth > 0``), and each final sheet's winding picture in the traces table. Heavy;
skipped without Chromium."""

from __future__ import annotations

import re

import pytest

from ..daemon.conftest import WAIT_CAP, Daemon
from ..daemon.test_status_browser import CHROMIUM, chromium

pytestmark = [pytest.mark.heavy, pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")]


def test_autoseg_section_in_headless_chromium(autoseg_copy, tmp_path):
    vp = autoseg_copy
    d = Daemon(vp, (vp / "vcd.toml").read_text().replace("[autoseg]\n", "[autoseg]\nenabled = true\n"))
    try:
        d.start()
        q = d.queue()
        d.wait_for(lambda: (q.get_kv("autoseg_state", {}) or {}).get("done"), "autoseg done", cap=4 * WAIT_CAP)
        d.wait_for(lambda: (vp / "traces" / "autoseg_report.png").exists(), "the report")
        r = chromium(tmp_path, f"http://127.0.0.1:{d.port}/", "--dump-dom")
        assert r.returncode == 0, r.stderr[-2000:]
        dom = r.stdout
        shot = tmp_path / "status_autoseg.png"
        r2 = chromium(tmp_path, f"http://127.0.0.1:{d.port}/", f"--screenshot={shot}", "--window-size=1280,2400")
        assert r2.returncode == 0 and shot.exists(), r2.stderr[-2000:]
        assert d.stop() == 0
    finally:
        d.kill_all()
    assert re.search(r'<b id="autoseg-phase">done</b>', dom), dom[:3000]
    assert '<svg id="coverage-chart"' in dom and "<polyline" in dom  # coverage of the predicted surface over time
    table = re.search(r'<table id="sheets">(.*?)</table>', dom, re.S)
    assert table, dom[-3000:]
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)[1:]
    assert rows
    areas = []
    for row in rows:  # every final sheet: its area and the wraps its winding job measured
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert re.fullmatch(r"\d+\.\d\d", cells[2]), cells
        areas.append(float(cells[1]))
    assert max(areas) > 0.001, areas
    report = re.search(r'<img id="autoseg-report"[^>]*>', dom)
    assert report and int(re.search(r'data-natural-width="(\d+)"', report.group(0)).group(1)) > 0
    assert re.search(r'<img class="thumb winding"[^>]*data-natural-width="[1-9]', table.group(1)), "no winding picture"
    for img in re.findall(r"<img[^>]*>", dom):
        assert 'data-natural-width="0"' not in img, img
