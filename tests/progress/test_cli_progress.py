"""Long commands print rate and ETA from one printer (issue 16, item 6): `vcd grow`, `vcd render`."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys

from vcd.cli.progress import Progress, fmt_seconds, rate_and_eta
from vcd.formats.tifxyz import write_surface
from vcd.synth import load_truth

ETA = re.compile(r"\[\s*\d+\.\d%\] .*\| [\d.e+-]+ %/s, \d+ (s|min \d+ s), ETA \d+ (s|min \d+ s|h \d+ min)")


def vcd(*a):
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, a)], capture_output=True, text=True, timeout=600)


def test_rate_and_eta_from_the_recent_reports():
    rate, eta = rate_and_eta([(10.0, 0.10), (20.0, 0.30)], 0.30)     # 2 %/s, 70 % left
    assert math.isclose(rate, 0.02) and math.isclose(eta, 35.0)
    assert rate_and_eta([(10.0, 0.1)], 0.1) == (None, None)            # one report tells nothing
    assert rate_and_eta([(10.0, 0.1), (20.0, 0.3)], -1) == (None, None)  # no target known
    assert fmt_seconds(42) == "42 s" and fmt_seconds(200) == "3 min 20 s" and fmt_seconds(7500) == "2 h 05 min"


def test_printer_lines_show_percent_rate_eta_and_done():
    out = io.StringIO()
    p = Progress(out, min_interval=0.0)
    p.start -= 10.0                     # as if started 10 s ago
    p(0.25, "step 1")
    p(-1, "1200 corners, 80 corners/s")  # no target: no percentage, no ETA
    p(1.0, "all")
    lines = out.getvalue().splitlines()
    assert ETA.search(lines[0]) and "ETA 30 s" in lines[0], lines[0]   # 25 % in 10 s: 30 s to go
    assert lines[1].startswith("[  ...  ] 1200 corners") and "ETA" not in lines[1] and "%]" not in lines[1]
    assert lines[2].startswith("[100.0%] all") and "done in 10 s" in lines[2]


def test_grow_prints_an_eta(scroll_copy, tmp_path):
    t = load_truth(scroll_copy)
    (tmp_path / "p.json").write_text('{"generations": 25, "step_size": 5, "min_area_cm": 0.0001, "seed": 1}')
    x, y, z = t.point(t.theta0 + 0.5 * (t.theta1 - t.theta0), 48)
    r = vcd("grow", scroll_copy / "volumes" / "synth_pred.zarr", scroll_copy / "paths", tmp_path / "p.json", x, y, z)
    assert r.returncode == 0, r.stderr
    assert ETA.search(r.stderr), r.stderr


def test_render_prints_an_eta_and_done(medium_scroll, tmp_path):
    t = load_truth(medium_scroll)
    g = t.sample_grid(t.theta0 + 1.0, t.theta0 + 1.0 + 6 * math.pi, 10, 80, 4)
    seg = write_surface(tmp_path / "seg", g, {"scale": [0.25, 0.25]})
    r = vcd("render", medium_scroll / "volumes" / "synth_ct.zarr", tmp_path / "layers", seg, 0.5, 1, 3)
    assert r.returncode == 0, r.stderr
    assert ETA.search(r.stderr), r.stderr
    assert re.search(r"\[100\.0%\] 3/3 layers  \| done in \d+ s", r.stderr), r.stderr
