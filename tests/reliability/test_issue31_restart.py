"""Issue 31 item 7: a daemon restarted after kill -9 requeues the dead daemon's running jobs at once
(it holds the lock, so their owner is dead) instead of waiting for their leases to expire."""

from __future__ import annotations

from vcd import jobs

from ..daemon.conftest import QUIET

#: leases far longer than the test's wait cap: only the requeue at start can free the job in time
LONG_LEASES = QUIET.replace("lease_seconds = 3", "lease_seconds = 3600")


def test_restart_after_kill9_requeues_running_jobs_at_once(daemon_factory):
    d = daemon_factory(LONG_LEASES, workers=1).start()
    q = d.queue()
    jid = jobs.submit(q, "sleep", {"seconds": 600})
    d.wait_for(lambda: q.get(jid)["state"] == "running", "the job to run")
    d.kill9()
    d.start()
    d.wait_for(lambda: q.get(jid)["state"] == "running" and q.get(jid)["worker"].endswith(f"-{d.proc.pid}"),
               "the job to run again under the new daemon")
    assert q.get(jid)["attempts"] == 2
    assert d.events("requeued_at_start")
