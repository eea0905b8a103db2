"""One-sided overlap links (VC can leave A -> B without B -> A, villa#846): read both ways, reported, repaired."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from vcd.formats.info import describe
from vcd.formats.overlaps import asymmetric_links, link_sets, read_own_overlaps, read_overlaps, repair_links
from vcd.formats.tifxyz import write_surface
from vcd.formats.volpkg import create_volpkg


def _vcd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *map(str, args)], capture_output=True, text=True)


def _pkg(tmp_path):
    vp = create_volpkg(tmp_path / "s.volpkg")
    pts = np.full((3, 3, 3), 5.0, np.float32)
    for n, links in (("auto_grown_a", ["auto_grown_b", "auto_grown_c"]), ("auto_grown_b", []),
                     ("auto_grown_c", ["auto_grown_a"]), ("auto_grown_d", ["auto_grown_gone"])):
        write_surface(vp.paths_dir / n, pts, overlapping=links)
    return vp


def test_one_sided_read_as_symmetric(tmp_path):
    vp = _pkg(tmp_path)
    p = vp.paths_dir
    assert read_own_overlaps(p / "auto_grown_b") == set()
    assert read_overlaps(p / "auto_grown_b") == {"auto_grown_a"}
    assert read_overlaps(p / "auto_grown_a") == {"auto_grown_b", "auto_grown_c"}
    assert link_sets(p) == {"auto_grown_a": {"auto_grown_b", "auto_grown_c"}, "auto_grown_b": {"auto_grown_a"},
                            "auto_grown_c": {"auto_grown_a"},  # one pass over the directory, read as symmetric
                            "auto_grown_d": {"auto_grown_gone"}, "auto_grown_gone": {"auto_grown_d"}}
    assert asymmetric_links(p) == [("auto_grown_a", "auto_grown_b")]  # a dangling name is not one-sided
    # the cache follows file changes
    (p / "auto_grown_a" / "overlapping.json").write_text(json.dumps({"overlapping": ["auto_grown_c"]}))
    assert read_overlaps(p / "auto_grown_b") == set()


def test_info_reports_and_repair_rewrites(tmp_path):
    vp = _pkg(tmp_path)
    info = describe(vp.path)
    assert info["one_sided_links"] == 1 and info["one_sided_examples"] == ["auto_grown_a -> auto_grown_b"]
    r = _vcd("info", vp.path)
    assert "one_sided_links: 1" in r.stdout and "--repair" in r.stdout, r.stdout + r.stderr
    r = _vcd("seg-add-overlap", "--repair", vp.paths_dir)
    assert r.returncode == 0, r.stderr
    assert "1 one-sided links repaired" in r.stdout
    assert read_own_overlaps(vp.paths_dir / "auto_grown_b") == {"auto_grown_a"}
    assert describe(vp.path)["one_sided_links"] == 0
    assert repair_links(vp.paths_dir) == []


def test_add_overlap_alias_and_missing_segment(tmp_path):
    vp = _pkg(tmp_path)
    r = _vcd("add-overlap", "--repair", vp.paths_dir, vp.paths_dir / "auto_grown_c")
    assert r.returncode == 0 and "0 one-sided" in r.stdout, r.stdout + r.stderr
    r = _vcd("add-overlap", vp.paths_dir)
    assert r.returncode == 1 and "--repair" in r.stderr
