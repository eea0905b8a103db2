"""The one rule for which vertices of a surface grid are valid (VC3D's tifxyz loader rule).

A grid is ``points[row, col, :] = (x, y, z)`` in level-0 voxels. A vertex is valid when
``x != -1`` and ``z > 0``; everything that writes a grid marks invalid vertices ``(-1, -1, -1)``.
Lives in ``kernels`` (the lowest package) so kernels, formats and every tool share it.
"""

from __future__ import annotations

import numpy as np

#: the coordinate value of an invalid vertex
INVALID = -1.0


def valid_mask(points: np.ndarray) -> np.ndarray:
    """bool ``[...]`` over ``points[..., 3]`` ((x, y, z) voxels): True where the vertex is valid
    (``x != -1`` and ``z > 0``)."""
    return (points[..., 0] != INVALID) & (points[..., 2] > 0)


def valid_quads(valid: np.ndarray) -> np.ndarray:
    """bool ``[rows-1, cols-1]``: True for each quad (``[r, c]`` .. ``[r+1, c+1]``) whose four corners
    are valid in the bool ``[rows, cols]`` map ``valid``."""
    return valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:] & valid[1:, 1:]
