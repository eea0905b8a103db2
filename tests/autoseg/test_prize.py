"""Prize-style scores (vcd/synth/prize.py) against surfaces made from the ground truth itself."""

from __future__ import annotations

import math

import numpy as np

from vcd.synth.generate import build_truth
from vcd.synth.prize import prize_score
from vcd.synth.score import coverage

SHAPE = (40, 96, 96)


def _truth():
    return build_truth(SHAPE, "easy", seed=2)


def test_the_true_sheet_scores_full_coverage_and_no_switch():
    t = _truth()
    g = t.sample_grid(t.theta0, t.theta1, 0, SHAPE[0] - 1, 3.0)
    s = prize_score([g], t)
    assert s["true_coverage"] > 0.97 and s["true_switch_rate"] == 0.0 and s["prize_line_met"]
    half = t.sample_grid(t.theta0, 0.5 * (t.theta0 + t.theta1), 0, SHAPE[0] - 1, 3.0)
    h = prize_score([half], t)["true_coverage"]
    # about the share of the sheet's area in the first half of the angle range (inner wraps are shorter)
    assert 0.15 < h < 0.6
    assert abs(h - coverage([half], t)) < 0.02  # the same as vcd.synth.score's coverage (no wrong wrap here)


def test_a_sheet_switch_counts_the_smaller_piece_and_wrong_wrap_covers_nothing_extra():
    t = _truth()
    th_mid = t.theta0 + 1.5
    a = t.sample_grid(th_mid - 1.0, th_mid, 5, 30, 2.0)
    b = t.sample_grid(th_mid + 2 * math.pi, th_mid + 2 * math.pi + 0.5, 5, 30, 2.0)  # one wrap outward
    rows = min(a.shape[0], b.shape[0])
    jumped = np.concatenate([a[:rows], b[:rows]], axis=1)  # a grid that switches wrap mid-row
    s = prize_score([jumped], t)
    na, nb = (a[:rows, :, 0] != -1).sum(), (b[:rows, :, 0] != -1).sum()
    assert math.isclose(s["true_switch_rate"], min(na, nb) / (na + nb), rel_tol=1e-6)
    assert s["sheets"][0]["jump_free_fraction"] < 1.0 and s["true_switch_rate"] > 0.2
    alone = prize_score([a[:rows], b[:rows]], t)
    assert alone["true_switch_rate"] == 0.0
    assert math.isclose(alone["true_coverage"], s["true_coverage"], abs_tol=0.01)
