"""Autoseg decisions as pure functions (vcd/daemon/autoseg_plan.py, the QA gate in vcd/post/qa_gate.py, final
sheets in vcd/post/final_sheets.py), against known geometry."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from vcd.daemon import autoseg_plan as ap
from vcd.kernels.points import densify_grid
from vcd.post import final_sheets as fs
from vcd.post import qa_gate as qg
from vcd.daemon.config import Config


def _patch(name, z, r, links, **kw):
    return ap.PatchGeom(name, (r, 0.0, z), r, (z - 5, z + 5), links, **kw)


def _grid(rows, cols, step=1.0, z0=0.0, x0=0.0):
    """A flat grid in the plane y = 0: points[r, c] = (x0 + c·step, 0, z0 + 1 + r·step)."""
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return np.stack([x0 + c * step, np.zeros_like(r), z0 + 1 + r * step], -1)


def test_plan_spreads_seeds_over_height_and_wrap_bands():
    # 3 heights × 3 radii, 4 patches each; the best-linked of each band pair is the one to pick
    patches = [_patch(f"p{z}{r}{k}", 10 + 30 * z + k, 20 + 15 * r + 0.1 * k, 5 + k) for z in range(3)
               for r in range(3) for k in range(4)]
    picks = ap.plan_traces(patches, set(), [], 9)
    assert len(picks) == 9
    bands = {(p[1], p[2]) for p in picks}
    assert len(bands) == 9  # one per (height, wrap) band pair
    assert all(p.endswith("3") for p in picks)  # the best-linked patch of each band


def test_plan_skips_tried_covered_defective_core_and_poorly_linked():
    patches = [_patch("tried", 10, 40, 9), _patch("covered", 10, 40, 9, covered=0.9),
               _patch("bad", 10, 40, 9, defective=True), _patch("core", 10, 5, 9), _patch("lonely", 10, 40, 1),
               _patch("good", 10, 40, 3)]
    assert ap.plan_traces(patches, {"tried"}, [], 5, min_links=2, core_radius=10) == ["good"]


def test_plan_prefers_bands_without_traces_and_approved_patches():
    patches = [_patch("low", 10, 40, 9), _patch("high", 90, 40, 3), _patch("high_ok", 90, 40, 2, approved=True)]
    # a trace already seeded at the low band: the next goes high, and there the approved patch first
    assert ap.plan_traces(patches, set(), [(10, 40, 0)], 1) == ["high_ok"]


def test_link_components_are_the_overlap_graph_s_pieces_largest_first():
    links = {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}, "d": {"e"}, "e": {"d"}, "f": set(), "g": {"gone"}}
    piece = ap.link_components(list("abcdefg"), links)
    assert piece["a"] == piece["b"] == piece["c"] == 0 and piece["d"] == piece["e"] == 1
    assert len({piece["f"], piece["g"], 1, 0}) == 4  # single patches are pieces of their own; unknown links ignored


def test_plan_seeds_every_piece_of_the_overlap_graph_before_a_second_trace_in_one():
    # a big well-linked piece (12 patches) and two small ones cut off by the volume's border: a trace
    # never leaves its seed's piece, so each small piece gets a seed before the big one gets a second
    big = [_patch(f"big{k}", 10 + 8 * k, 40, 12, area_cm2=0.02, component=0) for k in range(12)]
    small = [_patch(f"s{j}{k}", 30, 60 + 20 * j, 3, area_cm2=0.01 * (j + 1), component=1 + j)
             for j in range(2) for k in range(3)]
    picks = ap.plan_traces(big + small, set(), [(50, 40, 0)], 3, min_links=6)
    assert [p[:2] for p in picks[:2]] == ["s1", "s0"]  # most uncovered area first; their 3 links suffice there
    assert picks[2].startswith("big")
    covered = [_patch(f"s1{k}", 30, 80, 3, area_cm2=0.02, covered=0.9, component=2) for k in range(3)]
    assert not any(p.startswith("s1") for p in ap.plan_traces(big + small[:3] + covered, set(), [], 4, min_links=6))


def test_growth_finished_follows_the_schedulers_rule():
    sched = Config().schedule
    stats = {"patches": 10, "density": 0.5, "overlap_deficit": 5}
    assert ap.growth_finished(sched, stats, []) is None
    assert "share" in ap.growth_finished(sched, stats, [], forced=True)
    assert "density" in ap.growth_finished(sched, {**stats, "density": 1.0}, [])
    assert "saturated" in ap.growth_finished(sched, stats, [{"written": None}] * 4)
    assert ap.growth_finished(sched, {"patches": 0, "density": 0.0}, [], forced=True) is None


def test_qa_gate_cuts_hot_spots_and_keeps_the_seed_piece():
    q = np.zeros((10, 20))
    q[:, 9] = 0.9  # a hot column across the trace: the cut separates two pieces
    q[0, 0] = -1
    valid = np.ones((19, 39), bool)  # written grid, step 2: (10 - 1)·2 + 1 rows
    valid[0, 0] = False
    anchor = np.zeros_like(valid)
    anchor[5:8, 30:33] = True  # the seed lies right of the cut
    g = qg.qa_gate(q, valid, 2, 0.5, 1, {}, 20.0, anchor)
    assert g.hot == 10 and g.corners == 199
    assert g.pieces_dropped == 1
    assert g.keep[:, 22:].all() and not g.keep[:, :22].any()  # right piece kept, left dropped
    assert g.hot_cut_px == 19 * 7  # the hot column ±1 corner: pixels 15..21 (nearest corner 8..10)
    assert g.kept_px + g.cut_px == valid.sum()
    # without an anchor the larger piece is kept
    g2 = qg.qa_gate(q, valid, 2, 0.5, 1)
    assert g2.keep[:, 30:].all()


def test_qa_gate_keeps_everything_without_hot_spots():
    q = np.full((5, 5), 0.2)
    valid = np.ones((5, 5), bool)
    g = qg.qa_gate(q, valid, 1, 0.5, 2)
    assert g.cut_px == 0 and g.keep.all() and g.flagged_share == 0


def test_blame_names_the_component_that_reaches_the_suspicion():
    q = np.array([[0.9, 0.8, 0.7, 0.6]])
    comps = {"disagree": np.array([[0.9, 0, 0, 0]]), "rival": np.array([[0, 0.8, 0, 0]]),
             "offsurf": np.array([[0, 0, 0.7, 0]]), "support": np.array([[20.0, 20, 20, 20]])}
    assert qg.blame(q, comps, 20.0, 0.5) == {"patches_disagree": 1, "rival_surface": 1, "off_consensus_surface": 1,
                                            "normal_flip": 1, "low_support": 0}


def test_sheet_relations_drop_duplicates_fuse_same_sheet_never_two_wraps():
    a = _grid(20, 40).reshape(-1, 3)
    dup = _grid(10, 20, x0=5).reshape(-1, 3)  # inside a
    part = _grid(20, 40, x0=30).reshape(-1, 3)  # overlaps a's right quarter, extends beyond
    wrap2 = (_grid(20, 40, x0=30) + [0, 0.5, 0]).reshape(-1, 3)  # same place, but shares no patch with a
    clouds = {"a": a, "dup": dup, "part": part, "wrap2": wrap2}
    shared = {"a": {"p1", "p2"}, "dup": {"p1"}, "part": {"p2", "p3"}, "wrap2": {"q1"}}
    rel = fs.sheet_relations(clouds, ["a", "part", "wrap2", "dup"], 1.0, 0.95, shared_patches=shared)
    assert rel["duplicates"] == {"wrap2": "part", "dup": "a"}  # wrap2 lies on part's points: a duplicate
    assert rel["fuse"] == {"a": ["part"]}
    rel = fs.sheet_relations({"a": a, "wrap2": wrap2}, ["a", "wrap2"], 0.2, 0.95, shared_patches=shared)
    assert rel["kept"] == ["a", "wrap2"] and rel["fuse"] == {}  # overlap, but no shared patch: not fused


def test_covered_share_and_densify():
    g = _grid(3, 3, step=4.0)
    d = densify_grid(g, 1.0)
    assert len(d) > 9 and np.isclose(d[:, 1], 0).all()
    tree = cKDTree(d)
    pts = np.array([[2.0, 0.5, 3.0], [2.0, 5.0, 3.0]])
    assert fs.covered_share(pts, tree, 1.0) == 0.5
    assert fs.covered_share(pts, None, 1.0) == 0.0


def test_stage_timing_and_csv():
    jobs = [{"kind": "seed", "state": "done", "started": 0.0, "finished": 2.0, "result": {"cpu_seconds": 1.5}},
            {"kind": "expand", "state": "failed", "started": 1.0, "finished": 5.0, "result": None},
            {"kind": "trace", "state": "done", "started": 10.0, "finished": 20.0, "result": {"cpu_seconds": 9.0}},
            {"kind": "trace", "state": "queued", "started": None, "finished": None, "result": None}]
    t = ap.stage_timing(jobs)
    assert t["growth"] == {"jobs": 2, "wall_s": 5.0, "job_s": 6.0, "cpu_s": 1.5}
    assert t["tracing"] == {"jobs": 1, "wall_s": 10.0, "job_s": 10.0, "cpu_s": 9.0}
    assert t["fusion"]["cpu_s"] is None
    csv = ap.timing_csv(t).splitlines()
    assert csv[0] == "stage,jobs,wall_s,job_s,cpu_s" and "tracing,1,10.000,10.000,9.000" in csv


def test_fused_keep_cuts_inpainted_fills_and_fills_that_cross_a_wrap():
    pts = _grid(6, 10, step=2.0)
    ref_valid = np.ones((6, 10), bool)
    ref_valid[2:4, 3:7] = False  # a hole the fusion filled
    on_other = np.zeros((6, 10), bool)
    on_other[2:4, 3:5] = True  # the left half of the fill lies on another trace
    keep, cut, filled = qg.fused_keep(pts, ref_valid, on_other)
    assert filled == 8 and cut == 4 and keep[2:4, 3:5].all() and not keep[2:4, 5:7].any()
    jumped = pts.copy()
    jumped[2, 3] += [0, 14.0, 0]  # a snapped fill on the next wrap: long edges to its neighbours
    keep, cut, _ = qg.fused_keep(jumped, ref_valid, on_other)
    assert not keep[2, 3] and keep[3, 4] and cut == 7  # both ends of a long edge go, if filled
