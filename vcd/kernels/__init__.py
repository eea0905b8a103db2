"""Numba kernels. Kernels take arrays, never files. Points are (x, y, z); volumes are [z, y, x]."""
