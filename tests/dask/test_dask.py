"""The daemon with executor = "dask" against a real distributed.LocalCluster (issue 7)."""

import json
import os
import signal
import time

import pytest

distributed = pytest.importorskip("distributed")

from vcd.formats.volpkg import list_patches  # noqa: E402

from .conftest import dask_daemon  # noqa: E402


def test_seeds_expansion_and_trace_on_dask(scroll_copy, cluster):
    vp = scroll_copy
    grow = {"generations": 12, "step_size": 5, "min_area_cm": 0.0001, "tgt_overlap_count": 4}
    (vp / "seed.json").write_text(json.dumps(grow))
    (vp / "expand.json").write_text(json.dumps(grow))
    d = dask_daemon(vp, cluster, "seed_count = 2\nexpand_queue = 2\ninterval_seconds = 1.0\nmax_patches = 8")
    d.start()
    q = d.queue()
    d.wait_for(lambda: len(list_patches(vp / "paths")) >= 6, 120, "patches on dask")
    q.set_kv("paused", True)
    d.wait_for(lambda: not q.list(state="running") and not q.list(state="queued", kind="overlap"), 60, "idle")
    assert q.list(kind="seed", state="done") and q.list(kind="expand", state="done")
    seed = max(list_patches(vp / "paths"), key=lambda pm: float(pm[1]["area_cm2"]))[0]
    jid = q.submit("trace", {"step": 2, "src_step": 5, "consensus_default_th": 4, "inlier_base_threshold": 8,
                             "snapshot_every": 0, "volume": str(vp / "volumes" / "synth_pred.zarr"),
                             "src_dir": str(vp / "paths"), "tgt_dir": str(vp / "traces"), "seed": str(seed)})
    d.wait_for(lambda: q.get(jid)["state"] in ("done", "failed"), 120, "trace on dask")
    assert q.get(jid)["state"] == "done", q.get(jid)
    assert json.loads(q.get(jid)["result"])["cpu_seconds"] > 0  # recorded in the shared execute path (issue 28)
    assert "dask_connected" in d.log.read_text()
    d.stop()


def test_killed_dask_worker_still_every_job_done_once(scroll_copy, cluster, tmp_path):
    vp = scroll_copy
    d = dask_daemon(vp, cluster)
    d.start()
    q = d.queue()
    marker = d.volpkg / ".vcd" / "m.jsonl"  # daemon jobs may only write inside their volpkg
    ids = [q.submit("sleep", {"seconds": 2.0, "marker": str(marker)}) for _ in range(4)]
    d.wait_for(lambda: len(q.list(state="running")) >= 1, 30, "running on dask")
    time.sleep(0.7)
    # kill -9 one dask worker process mid-job (its nanny restarts it; the task reruns elsewhere)
    client = distributed.Client(cluster)
    pids = list(client.run(os.getpid).values())
    client.close()
    os.kill(pids[0], signal.SIGKILL)
    d.wait_for(lambda: all(q.get(i)["state"] in ("done", "failed") for i in ids), 120, "all jobs")
    assert all(q.get(i)["state"] == "done" for i in ids), [q.get(i) for i in ids]
    runs = [json.loads(l) for l in marker.read_text().splitlines()]
    assert sorted(r["job"] for r in runs) == sorted(ids)  # every job completed exactly once
    d.stop()
