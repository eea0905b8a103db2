"""vcd — the Volume Cartographer daemon.

Layout (imports point one way): ``cli -> daemon -> jobs -> grow/trace/post -> kernels, formats``.

Coordinate convention used everywhere: a *point* is ``(x, y, z)`` in level-0 voxels; a *volume
array* is indexed ``[z, y, x]``; a *surface grid* is ``[row, col]`` with ``(x, y, z)`` per cell.
"""

__version__ = "0.1.0"
