"""The Dask test set-up: a real ``distributed.LocalCluster`` and a daemon that runs its jobs there."""

import pytest

distributed = pytest.importorskip("distributed")

from ..daemon.conftest import Daemon  # noqa: E402


@pytest.fixture
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                 worker_dashboard_address=None)
    yield c
    c.close()


def dask_daemon(volpkg, cluster, schedule: str = "expansion = false") -> Daemon:
    """A (not yet started) daemon on ``volpkg`` with ``executor = "dask"`` on ``cluster``, 10 s leases
    and ``schedule`` as its ``[schedule]`` table (default: no automatic growth)."""
    return Daemon(volpkg, f"""
[daemon]
executor = "dask"
dask_scheduler = "{cluster.scheduler_address}"
lease_seconds = 10
[schedule]
{schedule}
""")
