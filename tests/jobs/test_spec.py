"""Job kinds declare their own policy: typed params, priority, dedup key, retry, path params.
Everything here is in-process on a real queue file (milliseconds)."""

import json

import pytest

from vcd import jobs
from vcd.daemon.queue import JobQueue
from vcd.errors import InputError
from vcd.grow.params import GrowParams
from vcd.jobs import overlap, retrace, seed, trace
from vcd.jobs.spec import USER_BOOST


def test_every_kind_declares_params_and_policy():
    for kind, module in jobs.KIND_MODULES.items():
        spec = jobs.get_spec(kind)
        assert spec.kind == kind and spec.params.__module__ == module, kind
        assert spec.retry.max_attempts >= 1 and spec.retry.backoff_s > 0, kind
        assert jobs.describe(kind).startswith(f"job kind {kind!r}")


def test_path_keys_are_derived_from_the_params():
    """The union of every kind's path params is what daemon jobs are confined by; a new path field
    in any kind's Params shows up here without a list kept by hand."""
    assert jobs.PATH_KEYS == frozenset().union(*(jobs.get_spec(k).path_keys() for k in jobs.KIND_MODULES))
    assert {"volume", "paths", "cache_root"} <= jobs.get_spec("seed").path_keys()  # cache_root: a GrowParams key
    assert jobs.get_spec("trace").path_keys() == {"volume", "src_dir", "tgt_dir", "seed"}
    assert "seed" not in jobs.get_spec("seed").path_keys()  # there it is GrowParams' RNG seed, a number


def test_grow_and_trace_params_reuse_the_tools_dataclasses_flattened():
    p = seed.params_for({"generations": "12", "step_size": 5, "mode": "expansion"}, "v.zarr", "paths",
                        seed_point=[1, 2, 3])
    assert isinstance(p.grow, GrowParams) and p.grow.generations == 12 and p.grow.mode == "seed"
    flat = seed.SPEC.dump(p)
    assert flat["generations"] == 12 and flat["volume"] == "v.zarr" and flat["seed_point"] == [1, 2, 3]
    assert "grow" not in flat and seed.SPEC.parse(flat) == p  # the JSON round-trips
    t = trace.SPEC.parse({"volume": "v", "src_dir": "p", "tgt_dir": "t", "seed": "s", "step": 2})
    assert t.trace.step == 2 and trace.SPEC.parse(json.loads(json.dumps(trace.SPEC.dump(t)))) == t


@pytest.mark.parametrize("kind, params, words", [
    ("seed", {"paths": "p"}, "lack 'volume'"),
    ("seed", {"volume": "v", "paths": "p", "step_size": "wide"}, "'step_size'"),
    ("overlap", {"paths": "p", "segment": "s", "segmnet": "t"}, "unknown key(s) ['segmnet']"),
    ("sleep", {"seconds": [1]}, "'seconds'"),
    ("nonsense", {}, "unknown job kind 'nonsense'"),
])
def test_bad_params_are_refused_at_submit_naming_the_key(tmp_path, kind, params, words):
    q = JobQueue(tmp_path / "q.sqlite")
    with pytest.raises(InputError) as exc:
        jobs.submit(q, kind, params)
    assert words in exc.value.message and "Fix:" in str(exc.value)
    assert q.counts() == {}  # nothing was queued


def test_submit_applies_the_kinds_policy(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    a = jobs.submit(q, "overlap", overlap.Params(paths="paths", segment="auto_grown_1"))
    assert jobs.submit(q, "overlap", {"paths": "paths", "segment": "auto_grown_1"}) == a  # dedup key from the kind
    r = jobs.submit(q, "retrace", retrace.Params(trace="traces/auto_trace_1"))
    s = jobs.submit(q, "seed", seed.params_for({}, "v.zarr", "paths"), by_user=True, max_attempts=5)
    job = {j: q.get(j) for j in (a, r, s)}
    assert job[a]["priority"] == overlap.SPEC.priority and job[r]["priority"] == retrace.SPEC.priority
    assert job[s]["priority"] == seed.SPEC.priority + USER_BOOST and job[s]["max_attempts"] == 5
    assert job[a]["max_attempts"] == overlap.SPEC.retry.max_attempts
    assert job[a]["params"] == {"paths": "paths", "segment": "auto_grown_1", "search_effort": 10}
    # linking before retraces before growth: the claim order follows the kinds' priorities
    q.submit("sleep", {})
    assert [q.claim("w")["kind"] for _ in range(4)] == ["overlap", "seed", "retrace", "sleep"]


def test_confinement_uses_the_kinds_own_path_params(tmp_path):
    vp = tmp_path / "a.volpkg"
    (vp / "paths").mkdir(parents=True)
    jobs.confine_params({"paths": "paths", "segment": "auto_grown_1"}, vp, "overlap")
    with pytest.raises(InputError):
        jobs.confine_params({"paths": "paths", "segment": "../../etc"}, vp, "overlap")
    jobs.confine_params({"volume": "volumes/v.zarr", "paths": "paths", "seed": 7}, vp, "seed")
