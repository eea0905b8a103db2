"""Params files: typos are named with the closest known key; booleans are JSON booleans (issue 15 item 5)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vcd.errors import InputError
from vcd.grow.params import GrowParams
from vcd.trace.params import TraceParams


def test_grow_typo_warns_with_closest_key():
    msgs = []
    p = GrowParams.from_dict({"generatons": 5, "step_size": 4, "use_cuda": True}, source="p.json", warn=msgs.append)
    assert p.generations == 100  # the typo does not set generations
    assert msgs == ["unknown param 'generatons' (did you mean 'generations'?) in p.json — ignored"]


def test_trace_typo_and_far_key():
    msgs = []
    TraceParams.from_dict({"consensus_defualt_th": 3, "zzz_qqq": 1, "z_min": 1, "z_max": 9}, warn=msgs.append)
    assert msgs[0].startswith("unknown param 'consensus_defualt_th' (did you mean 'consensus_default_th'?)")
    assert msgs[1].startswith("unknown param 'zzz_qqq' in") and len(msgs) == 2


@pytest.mark.parametrize("value,expect", [(False, False), (True, True), ("false", False), ("True", True)])
def test_trace_booleans(value, expect):
    assert TraceParams.from_dict({"flip_x": value}).flip_x is expect


@pytest.mark.parametrize("value", ["no", 0, 1, None, "yes"])
def test_trace_bad_boolean_is_an_input_error(value):
    with pytest.raises(InputError, match="flip_x"):
        TraceParams.from_dict({"flip_x": value}, source="t.json")


def test_cli_grow_names_the_typo_once(scroll_copy, tmp_path):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"generatons": 5, "generations": 3, "step_size": 5, "min_area_cm": 0.0001}))
    vol = scroll_copy / "volumes" / "synth_pred.zarr"
    r = subprocess.run([sys.executable, "-m", "vcd", "grow", "-v", vol, "-t", scroll_copy / "paths", "-p", params,
                        "-s", "1", "1", "1"], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if "generatons" in l]
    assert lines == [f"warning: unknown param 'generatons' (did you mean 'generations'?) in {params} — ignored"], \
        r.stderr
