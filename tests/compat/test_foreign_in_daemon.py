"""Issue 15 (done-when 1): patches another tool wrote (``meta.json`` ``source`` VC3D's grower, or
none at all; ``format`` tifxyz and a ``bbox``) dropped into a *running* daemon's ``paths/`` are
linked both ways. Waits on the event (``overlapping.json``) with the fixture's generous cap."""

from __future__ import annotations

from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import read_meta
from vcd.synth import load_truth

from ..daemon.conftest import daemon_factory  # noqa: F401  (the fixture: every process stopped at teardown)
from .conftest import foreign_patch


def _linked(paths, a, b) -> bool:
    return b in read_overlaps(paths / a) and a in read_overlaps(paths / b)


def test_foreign_patches_dropped_into_a_running_daemon_are_linked_both_ways(daemon_factory):  # noqa: F811
    d = daemon_factory().start()
    vp = d.volpkg
    paths = vp / "paths"
    truth = load_truth(vp)
    t0 = truth.theta0 + 0.6 * (truth.theta1 - truth.theta0)  # outer wraps: many columns per radian
    span = min(1.0, 0.3 * (truth.theta1 - truth.theta0))
    a, b, c = "auto_grown_20250101000000001", "auto_grown_20250101000000002", "auto_grown_20250101000000003"
    foreign_patch(vp, a, t0, t0 + span, "vc_grow_seg_from_seed")
    meta = read_meta(paths / a)
    assert meta["source"] == "vc_grow_seg_from_seed" and meta["format"] == "tifxyz" and meta["bbox"]
    foreign_patch(vp, b, t0 + 0.5 * span, t0 + 1.5 * span, "vc_grow_seg_from_seed")
    foreign_patch(vp, c, t0 + 0.8 * span, t0 + 1.8 * span, None)  # no source at all: still a patch
    d.wait_for(lambda: _linked(paths, a, b) and _linked(paths, b, c) and _linked(paths, a, c),
               "both-way links of the foreign patches")
    d.wait_for(lambda: len(d.queue().list(kind="overlap")) == 3 and
               all(j["state"] == "done" for j in d.queue().list(kind="overlap")), "overlap jobs done")
    assert read_overlaps(paths / a) == {b, c} and read_overlaps(paths / b) == {a, c}
    assert read_overlaps(paths / c) == {a, b}
    assert d.stop() == 0
