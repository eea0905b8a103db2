"""Dask worker preload (``dask worker ... --preload vcd.daemon.dask_preload``): warm numba caches
so the first job on a fresh worker does not pay JIT compilation (kernels use ``cache=True``; this
loads or compiles them once per worker process)."""


def dask_setup(worker=None):  # called by distributed on preload
    import numpy as np

    from ..kernels import grow, pointsearch, sample  # noqa: F401  (import = load cached machine code)
    vol = np.zeros((4, 4, 4), np.uint8)
    sample.sample_dense(vol, np.zeros((1, 3)))
