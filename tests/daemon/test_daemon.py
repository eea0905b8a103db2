"""The real daemon process on a real synthetic volpkg (issue 5)."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vcd.formats.overlaps import read_overlaps
from vcd.formats.tifxyz import set_tag, write_mask, write_surface
from vcd.synth import load_truth

from vcd.daemon.queue import JobQueue

from .conftest import WAIT_CAP, free_port, group_members
from ..conftest import sigint_default


def put_patch(vp, name, th0, th1, z0, z1, step=4):
    t = load_truth(vp)
    return write_surface(vp / "paths" / name, t.sample_grid(t.theta0 + th0, t.theta0 + th1, z0, z1, step),
                         {"scale": [1 / step, 1 / step], "source": "vcd_grow", "area_cm2": 0.01})


def put_trace(vp, name, patches):
    t = load_truth(vp)
    prov = {"version": 1, "patches": {p: {"mask_sha1": None, "tags": []} for p in patches}}
    return write_surface(vp / "paths" / name, t.sample_grid(t.theta0 + 3, t.theta0 + 5, 20, 60, 4),
                         {"scale": [0.25, 0.25], "source": "vcd_trace"},
                         extra_files={"vcd_provenance.json": json.dumps(prov).encode()})


def jobs(q, kind):
    return [j for j in q.list(kind=kind, limit=1000)]


def test_new_patch_is_linked(daemon_factory):
    """Linking waits on the event (latency is measured in bench/, not asserted: a busy machine is slower)."""
    d = daemon_factory().start()
    vp = d.volpkg
    put_patch(vp, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    put_patch(vp, "auto_grown_20250101000000002", 2.5, 3.5, 40, 80)
    put_patch(vp, "auto_grown_20250101000000003", 2.0 + 2 * math.pi, 3.0 + 2 * math.pi, 20, 60)  # next wrap
    d.wait_for(lambda: (vp / "paths" / "auto_grown_20250101000000002" / "overlapping.json").exists()
               and "auto_grown_20250101000000002" in read_overlaps(vp / "paths" / "auto_grown_20250101000000001"),
               "overlapping.json")
    d.wait_for(lambda: all(j["state"] == "done" for j in jobs(d.queue(), "overlap")) and
               len(jobs(d.queue(), "overlap")) == 3, "overlap jobs done")
    assert read_overlaps(vp / "paths" / "auto_grown_20250101000000001") == {"auto_grown_20250101000000002"}
    assert read_overlaps(vp / "paths" / "auto_grown_20250101000000003") == set()
    # our own writes (overlapping.json) trigger no further jobs
    time.sleep(1.0)
    assert len(jobs(d.queue(), "overlap")) == 3
    assert d.stop() == 0


def test_mask_and_tag_edits_retrace_exactly_the_traces_that_used_the_patch(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg
    a = put_patch(vp, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    b = put_patch(vp, "auto_grown_20250101000000002", 4.0, 5.0, 20, 60)
    c = put_patch(vp, "auto_grown_20250101000000003", 6.0, 7.0, 20, 60)
    put_trace(vp, "auto_trace_20250101000000010", [a.name, b.name])
    put_trace(vp, "auto_trace_20250101000000011", [c.name])
    d.start()
    q = d.queue()
    d.wait_for(lambda: q.traces_using(a.name) == ["auto_trace_20250101000000010"], "provenance recorded")
    assert jobs(q, "retrace") == []
    # GIMP-style mask edit on A: only the trace that used A is retraced
    rows, cols = 11, 20
    from vcd.formats.tifxyz import read_surface
    g = read_surface(a).points.shape[:2]
    keep = np.full(g, 255, np.uint8)
    keep[:3, :3] = 0
    write_mask(a, keep)
    d.wait_for(lambda: len(jobs(q, "retrace")) == 1, "retrace after mask edit")
    assert jobs(q, "retrace")[0]["kind"] == "retrace"
    assert q.get(jobs(q, "retrace")[0]["id"])["params"]["trace"].endswith("auto_trace_20250101000000010")
    # approving C retraces only the trace that used C
    set_tag(c, "approved", user="alice")
    d.wait_for(lambda: len(jobs(q, "retrace")) == 2, "retrace after approving")
    traces = sorted(q.get(j["id"])["params"]["trace"].rsplit("/", 1)[1] for j in jobs(q, "retrace"))
    assert traces == ["auto_trace_20250101000000010", "auto_trace_20250101000000011"]
    # an unrelated tag (reviewed) changes nothing
    set_tag(b, "reviewed")
    time.sleep(1.0)
    assert len(jobs(q, "retrace")) == 2
    d.stop()


def test_changes_while_down_are_reconciled_at_start(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg
    a = put_patch(vp, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    put_trace(vp, "auto_trace_20250101000000010", [a.name])
    d.start()
    q = d.queue()
    d.wait_for(lambda: q.fingerprint(a.name) is not None, "fingerprint")
    d.stop()
    set_tag(a, "defective")  # while the daemon is down
    d.start()
    d.wait_for(lambda: len(jobs(d.queue(), "retrace")) == 1, "retrace after restart")
    d.stop()


def _marker_intervals(path):
    rows = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
    return rows


def test_kill9_worker_and_daemon_lose_nothing(daemon_factory, tmp_path):
    d = daemon_factory().start()
    q = d.queue()
    marker = d.volpkg / ".vcd" / "marker.jsonl"  # daemon jobs may only write inside their volpkg
    ids = [q.submit("sleep", {"seconds": 1.5, "marker": str(marker)}) for _ in range(6)]
    d.wait_for(lambda: len(q.list(state="running")) >= 1, "a running job")
    # kill -9 one worker mid-job
    running = q.list(state="running")[0]
    worker = q.get(running["id"])["worker"]
    pids = subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True, text=True).stdout.split()
    victim = None
    for pid in pids:
        cmd = open(f"/proc/{pid}/cmdline").read()
        if "multiprocessing" in cmd:
            victim = int(pid)
            break
    assert victim
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    # kill -9 the daemon itself, then restart
    d.kill9()
    time.sleep(0.5)
    d.start()
    d.wait_for(lambda: all(q.get(i)["state"] in ("done", "failed") for i in ids), "all jobs finished")
    assert all(q.get(i)["state"] == "done" for i in ids), [q.get(i) for i in ids]
    runs = _marker_intervals(marker)
    by_job = {}
    for r in runs:
        by_job.setdefault(r["job"], []).append((r["start"], r["end"]))
    assert set(by_job) == set(ids)
    for iv in by_job.values():  # never two runs of one job at the same time
        iv.sort()
        assert all(b[0] >= a[1] for a, b in zip(iv, iv[1:]))
    assert not [p for p in (d.volpkg / "paths").iterdir() if p.name.startswith(".") and p.is_dir()]
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    d.stop()


def test_sigterm_requeues_long_jobs_and_metrics_move(daemon_factory):
    d = daemon_factory().start()
    q = d.queue()
    url = f"http://127.0.0.1:{d.port}/metrics"
    before = urllib.request.urlopen(url, timeout=WAIT_CAP).read().decode()
    short = [q.submit("sleep", {"seconds": 0.2}) for _ in range(3)]
    d.wait_for(lambda: all(q.get(i)["state"] == "done" for i in short), "short jobs")
    after = urllib.request.urlopen(url, timeout=WAIT_CAP).read().decode()
    assert 'vcd_jobs_completed_total{kind="sleep",state="done"} 3.0' in after
    assert 'vcd_jobs_completed_total{kind="sleep"' not in before
    assert "vcd_job_duration_seconds_bucket" in after and "vcd_patches" in after
    long = q.submit("sleep", {"seconds": 30})
    d.wait_for(lambda: q.get(long)["state"] == "running", "long job running")
    assert d.stop(signal.SIGTERM) == 0
    job = q.get(long)
    assert job["state"] == "queued" and "shutdown" in (job["message"] or "")


def test_cancel_running_job(daemon_factory):
    d = daemon_factory().start()
    q = d.queue()
    j = q.submit("sleep", {"seconds": 30})
    d.wait_for(lambda: q.get(j)["state"] == "running", "running")
    assert q.cancel(j) == "cancelling"
    d.wait_for(lambda: q.get(j)["state"] == "cancelled", "cancelled")
    d.stop()


def test_vcdctl_end_to_end(daemon_factory):
    d = daemon_factory()
    vp = d.volpkg

    def ctl(*a):
        return subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(vp), *a],
                              capture_output=True, text=True)
    r = ctl("submit", "sleep", "--param", "seconds=0.1", "--priority", "3")
    assert r.returncode == 0, r.stderr
    jid = int(r.stdout.strip())
    assert "queued" in ctl("ls").stdout
    assert ctl("cancel", str(jid)).stdout.strip() == "cancelled"
    assert ctl("retry", str(jid)).stdout.strip() == "queued"
    assert ctl("pause").stdout.strip() == "paused"
    assert "scheduler: paused" in ctl("status").stdout
    assert ctl("resume").stdout.strip() == "resumed"
    d.start()
    d.wait_for(lambda: d.queue().get(jid)["state"] == "done", "job done")
    show = ctl("show", str(jid)).stdout
    assert "state: done" in show and '"slept"' in show
    st = ctl("status").stdout
    assert "sleep" in st and "collection:" in st
    r = ctl("submit", "nosuchkind")
    assert r.returncode == 1 and "unknown job kind" in r.stderr
    d.stop()


def test_vcdctl_seed_parses_pasted_vc3d_lines(scroll_copy):
    text = ("focus point changed to [3200, 2400, 5260] on volume s1\n"
            "this line has no point\n"
            "poi added: [ 100.5, 200, 300 ] (layer 3)\n"
            "10 20 30\n")
    r = subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(scroll_copy), "seed", "--then-expand"],
                       input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and "this line has no point" in r.stderr
    from vcd.daemon.queue import JobQueue
    q = JobQueue.for_volpkg(scroll_copy)
    seeds = [q.get(j["id"])["params"]["seed_point"] for j in q.list(kind="seed")]
    assert sorted(map(tuple, seeds)) == sorted([(3200, 2400, 5260), (3170, 2400, 5260), (3230, 2400, 5260),
                                                (100.5, 200, 300), (70.5, 200, 300), (130.5, 200, 300),
                                                (10, 20, 30), (-20, 20, 30), (40, 20, 30)])
    assert len(q.list(kind="expand")) == 3


def test_bad_config_is_one_clear_line(scroll_copy):
    (scroll_copy / "vcd.toml").write_text("[daemon]\nworkers = 'many'\n")
    r = subprocess.run([sys.executable, "-m", "vcd", "daemon", str(scroll_copy)], capture_output=True, text=True)
    assert r.returncode == 1 and "workers" in r.stderr and "Traceback" not in r.stderr


def test_short_jobs_follow_each_other_without_idle_time(daemon_factory):
    """A worker takes the next job as soon as one ends (its heartbeat thread wakes on the job's end;
    it used to poll every 0.1 s, which made 10,000 30-ms overlap jobs take 2.7x longer)."""
    d = daemon_factory(workers=1)
    q = d.queue()
    ids = [q.submit("sleep", {"seconds": 0}) for _ in range(40)]
    d.start()
    d.wait_for(lambda: all(q.get(i)["state"] == "done" for i in ids), "40 short jobs")
    rows = sorted((q.get(i)["started"], q.get(i)["finished"]) for i in ids)
    gaps = [s2 - f1 for (_, f1), (s2, _) in zip(rows, rows[1:])]
    assert np.median(gaps) < 0.03, gaps
    assert d.stop() == 0


def _ctl(vp, *a, cwd=None):
    return subprocess.run([sys.executable, "-m", "vcd.cli.ctl", "--volpkg", str(vp), *a], capture_output=True,
                          text=True, cwd=cwd)


def test_second_daemon_on_the_volpkg_is_refused_naming_the_first(daemon_factory):
    d = daemon_factory().start()
    r = subprocess.run([sys.executable, "-m", "vcd", "daemon", str(d.volpkg), "--metrics-addr",
                        f"127.0.0.1:{free_port()}", "--log-format", "json"], capture_output=True, text=True,
                       timeout=WAIT_CAP)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("error:") and "another vcd daemon" in line and "Traceback" not in r.stderr
    assert f"pid {d.proc.pid}" in line and socket.gethostname() in line and f"127.0.0.1:{d.port}" in line, line
    assert "since 20" in line and "daemon.lock" in line
    assert d.proc.poll() is None  # the first one is untouched and still answers
    first = _ctl(d.volpkg, "status").stdout.splitlines()[0]
    assert first.startswith(f"daemon: running (pid {d.proc.pid}, host {socket.gethostname()}") and "version" in first
    assert d.stop() == 0


def test_stale_lock_of_a_killed_daemon_is_taken_over(daemon_factory):
    d = daemon_factory().start()
    old = d.proc.pid
    info = json.loads((d.volpkg / ".vcd" / "daemon.json").read_text())
    assert info["pid"] == old and info["metrics_addr"] == f"127.0.0.1:{d.port}"
    d.kill9()  # no clean-up ran: lock file and sidecar are left behind
    assert (d.volpkg / ".vcd" / "daemon.lock").exists() and (d.volpkg / ".vcd" / "daemon.json").exists()
    st = _ctl(d.volpkg, "status")
    assert st.returncode == 0 and st.stdout.splitlines()[0].startswith("daemon: not running"), st.stdout
    r = _ctl(d.volpkg, "submit", "sleep", "--param", "seconds=0")
    assert r.returncode == 0 and "no vcd daemon runs" in r.stderr, r.stderr
    jid = int(r.stdout.strip())
    d.start()  # takes the lock over, runs what was queued meanwhile
    assert json.loads((d.volpkg / ".vcd" / "daemon.json").read_text())["pid"] == d.proc.pid != old
    d.wait_for(lambda: d.queue().get(jid)["state"] == "done", "job queued while down")
    r = _ctl(d.volpkg, "submit", "sleep", "--param", "seconds=0")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert _ctl(d.volpkg, "status").stdout.startswith(f"daemon: running (pid {d.proc.pid},")
    assert d.stop() == 0
    assert not (d.volpkg / ".vcd" / "daemon.json").exists()  # a clean stop removes the sidecar
    assert _ctl(d.volpkg, "status").stdout.startswith("daemon: not running")


def test_sigint_stops_the_daemon_cleanly_with_130(daemon_factory):
    d = daemon_factory().start()
    assert d.stop(signal.SIGINT) == 130
    assert "daemon_stopped" in d.log_text() and "Traceback" not in d.log_text()


def test_a_storm_of_sigterms_still_stops_the_daemon(daemon_factory):
    """SIGTERM every 2 ms from the moment the daemon is up, through its shutdown (systemd and impatient
    people send more than one). Its handler used to log, and hung the daemon when a signal came while
    the main thread was writing a log line (1 in 10 rounds here); it now only takes note."""
    d = daemon_factory()
    for k in range(4):
        d.start()
        for _ in range(200):
            if d.proc.poll() is not None:
                break
            try:
                d.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.002)
        d.proc.wait(WAIT_CAP)  # a hung daemon fails here, after the cap
        # stopped cleanly; a signal that lands after the clean stop, as the interpreter exits, ends it by SIGTERM
        assert d.proc.returncode in (0, -signal.SIGTERM)
        assert d.log_text().count("daemon_stopped") == k + 1
    assert "Traceback" not in d.log_text()


INNER_CONFTEST = '''
from tests.conftest import medium_scroll, scroll_copy  # noqa: F401
from tests.daemon.conftest import daemon_factory  # noqa: F401
'''

INNER_TEST = '''
def test_fails_with_a_busy_daemon(daemon_factory):
    d = daemon_factory().start()
    q = d.queue()
    jobs = [q.submit("sleep", {"seconds": 600}) for _ in range(2)]
    d.wait_for(lambda: len(q.list(state="running")) == 2, "both workers busy")
    open(PIDFILE, "w").write(str(d.proc.pid))
    assert False, "deliberate failure"
'''


def test_a_failing_daemon_test_leaves_no_process(tmp_path):
    """The fixture kills the daemon and its (busy) workers even when the test fails."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(INNER_CONFTEST)
    pidfile = tmp_path / "daemon.pid"
    (inner / "test_inner.py").write_text(f"PIDFILE = {str(pidfile)!r}\n" + INNER_TEST)
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(inner),
                        str(inner / "test_inner.py")], capture_output=True, text=True, cwd=root, timeout=2 * WAIT_CAP)
    assert r.returncode == 1 and "deliberate failure" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    pgid = int(pidfile.read_text())
    assert group_members(pgid) == [], [open(f"/proc/{p}/cmdline").read() for p in group_members(pgid)]


def test_closed_pipe_is_silent(scroll_copy):
    q = JobQueue.for_volpkg(scroll_copy)
    for _ in range(3000):
        q.submit("sleep", {"seconds": 0})
    cmd = f"{sys.executable} -m vcd.cli.ctl --volpkg {scroll_copy} ls --limit 5000 2>err.txt | head -n 2"
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=scroll_copy.parent)
    assert len(r.stdout.splitlines()) == 2
    assert (scroll_copy.parent / "err.txt").read_text() == ""
    big = "from vcd.cli.main import guarded; import sys; sys.exit(guarded(lambda: [print('x' * 80) for _ in range(10**5)] and 0))"
    r = subprocess.run(["sh", "-c", f"{sys.executable} -c \"{big}\" 2>err2.txt | head -n 1"], capture_output=True,
                       text=True, cwd=scroll_copy.parent)
    assert r.stdout == "x" * 80 + "\n" and (scroll_copy.parent / "err2.txt").read_text() == ""


def test_ctrl_c_in_a_foreground_command_is_one_line_and_130(scroll_copy, tmp_path):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"generations": 100000, "step_size": 5, "min_area_cm": 0.0001}))
    t = load_truth(scroll_copy)
    seed = t.point(t.theta0 + 8, 48)
    p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "vcd", "grow",
                          str(scroll_copy / "volumes" / "synth_pred.zarr"), str(scroll_copy / "paths"), str(params),
                          *map(str, seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=sigint_default)
    # wait for the event: the grow command's own module is imported (the CLI is past start-up)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if "vcd.grow.run" in line or "vcd.kernels.grow" in line:
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=WAIT_CAP)
    rest = [ln for ln in err.splitlines() if not ln.startswith("import time:")]
    assert p.returncode == 130, (p.returncode, rest)
    assert rest == ["interrupted"], rest
    assert not [d for d in (scroll_copy / "paths").iterdir() if d.is_dir()]  # nothing partial left


def test_submit_trace_as_the_readme_shows_with_paths_from_the_callers_directory(daemon_factory, tmp_path):
    """`vcdctl submit trace --params trace.json` from another directory: relative paths are taken from
    there (not from the daemon's directory), volume/src_dir/tgt_dir default to the volpkg's, the job runs."""
    from vcd.grow.linking import link_new_patch
    d = daemon_factory()
    vp = d.volpkg
    names = [put_patch(vp, f"auto_grown_202501010000000{i:02d}", 3.0 + 0.25 * i, 3.9 + 0.25 * i, 10, 80).name
             for i in range(12)]
    for n in names:
        link_new_patch(vp / "paths", n)
    work = tmp_path / "work"
    work.mkdir()
    (work / "trace.json").write_text(json.dumps({"seed": f"../scroll.volpkg/paths/{names[0]}", "step": 2,
                                                 "src_step": 4, "consensus_default_th": 4,
                                                 "inlier_base_threshold": 8}))
    r = _ctl(vp, "submit", "trace", "--params", "trace.json", cwd=work)
    assert r.returncode == 0 and "no vcd daemon runs" in r.stderr, r.stderr
    q = d.queue()
    job = q.get(int(r.stdout.strip()))
    assert job["params"]["seed"] == str(vp / "paths" / names[0])
    assert job["params"]["src_dir"] == str(vp.resolve() / "paths") and job["params"]["tgt_dir"].endswith("traces")
    assert job["params"]["volume"].endswith("synth_pred.zarr")
    d.start()
    d.wait_for(lambda: q.get(job["id"])["state"] in ("done", "failed"), "trace job")
    assert q.get(job["id"])["state"] == "done", q.get(job["id"])["error"]
    assert any(p.name.startswith("auto_trace_") for p in (vp / "traces").iterdir())
    # without a seed: one line naming what is missing; the help names the required keys
    r = _ctl(vp, "submit", "trace", "--param", "step=2", cwd=work)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "seed" in r.stderr, r.stderr
    assert "required keys" in _ctl(vp, "submit", "--help").stdout
    h = _ctl(vp, "submit", "trace", "--help")
    assert h.returncode == 0 and "seed" in h.stdout and "src_step" in h.stdout, h.stdout
    # the volpkg's trace_params.json ([params_files] trace) is the default; --param wins over it
    (vp / "trace_params.json").write_text(json.dumps({"src_step": 4, "consensus_default_th": 4}))
    r = _ctl(vp, "submit", "trace", "--param", f"seed=paths/{names[0]}", "--param", "consensus_default_th=5", cwd=vp)
    job = q.get(int(r.stdout.strip()))
    assert job["params"]["src_step"] == 4 and job["params"]["consensus_default_th"] == 5, job["params"]
    assert d.stop() == 0


def test_ctrl_c_inside_a_numba_kernel_is_an_interrupt_not_a_traceback(capsys):
    """numba re-raises a KeyboardInterrupt from a kernel's callback as ``SystemError`` (seen with
    ``vcd trace``): the CLI still exits 130 with one line; other SystemErrors are not swallowed."""
    from vcd.cli.main import guarded

    def kernel_interrupted():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("<numba function> returned a result with an exception set")
    assert guarded(kernel_interrupted) == 130
    assert capsys.readouterr().err == "interrupted\n"

    def other():
        raise SystemError("a real bug")
    with pytest.raises(SystemError):
        guarded(other)
