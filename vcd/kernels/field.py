r"""The distance field as the kernels see it: a pool of 64³ uint8 chunks (1/8-voxel units).

``dist_grad(pool, slots, shape, x, y, z)`` samples trilinearly at a point ``(x, y, z)`` (voxels) and
returns the distance to the predicted surface in voxels with its analytic gradient
(d/dx, d/dy, d/dz). ``pool[slot, z, y, x]`` holds chunk data, ``slots[cz, cy, cx]`` the slot of each
chunk (-1 = not loaded); ``shape`` is the volume's (z, y, x). Unloaded chunks and anything outside
the volume read as *far* (31.9 voxels), so nothing grows there.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .sample import blend_in_chunk, cell_of, trilinear_blend

UNITS = 8.0
FAR = 255.0


@nb.njit(cache=True, inline="always")
def _vox(pool, slots, shape, iz, iy, ix):
    if iz < 0 or iy < 0 or ix < 0 or iz >= shape[0] or iy >= shape[1] or ix >= shape[2]:
        return FAR
    s = slots[iz >> 6, iy >> 6, ix >> 6]
    if s < 0:
        return FAR
    return float(pool[s, iz & 63, iy & 63, ix & 63])


@nb.njit(cache=True)
def dist_grad(pool, slots, shape, x, y, z):
    """Distance to the predicted surface and its gradient at one point (trilinear, numba).

    Parameters
    ----------
    pool : numpy.ndarray
        uint8 ``[slots, 64, 64, 64]`` loaded chunks, ``[slot, z, y, x]``, in 1/8-voxel units.
    slots : numpy.ndarray
        int ``[cz, cy, cx]``: each chunk's slot in ``pool``, -1 = not loaded (reads as far).
    shape : tuple of int
        The volume's ``(z, y, x)`` voxels.
    x, y, z : float
        The point, voxels.

    Returns
    -------
    tuple of 4 float
        ``(d, dd/dx, dd/dy, dd/dz)``: distance in voxels (31.9 = far: unloaded or outside) and its
        gradient per voxel.
    """
    ix, iy, iz, fx, fy, fz = cell_of(x, y, z)
    # fast case, all but a few % of reads: the cell lies inside one loaded 64³ chunk — the test of
    # sample.one_chunk_cell, by shifts and masks for this fixed chunk size (its general divisions
    # made the grower ~25 % slower when it was called here)
    if ix >= 0 and iy >= 0 and iz >= 0 and iz + 1 < shape[0] and iy + 1 < shape[1] and ix + 1 < shape[2] \
            and (ix & 63) != 63 and (iy & 63) != 63 and (iz & 63) != 63:
        s = slots[iz >> 6, iy >> 6, ix >> 6]
        if s >= 0:
            v, gx, gy, gz = blend_in_chunk(pool, s, iz & 63, iy & 63, ix & 63, fx, fy, fz)
            return v / UNITS, gx / UNITS, gy / UNITS, gz / UNITS
    v, gx, gy, gz = trilinear_blend(
        _vox(pool, slots, shape, iz, iy, ix), _vox(pool, slots, shape, iz, iy, ix + 1),
        _vox(pool, slots, shape, iz, iy + 1, ix), _vox(pool, slots, shape, iz, iy + 1, ix + 1),
        _vox(pool, slots, shape, iz + 1, iy, ix), _vox(pool, slots, shape, iz + 1, iy, ix + 1),
        _vox(pool, slots, shape, iz + 1, iy + 1, ix), _vox(pool, slots, shape, iz + 1, iy + 1, ix + 1), fx, fy, fz)
    return v / UNITS, gx / UNITS, gy / UNITS, gz / UNITS


@nb.njit(cache=True)
def dist_only(pool, slots, shape, x, y, z):
    """:func:`dist_grad`'s distance alone (voxels) at ``(x, y, z)`` (voxels), same arguments.

    Returns
    -------
    float
        Distance to the predicted surface, voxels.
    """
    v, _, _, _ = dist_grad(pool, slots, shape, x, y, z)
    return v


@nb.njit(cache=True)
def dist_many(pool, slots, shape, pts):
    """:func:`dist_only` at many points.

    Parameters
    ----------
    pool, slots, shape
        The distance field's chunk pool, as for :func:`dist_grad`.
    pts : numpy.ndarray
        float ``[N, 3]`` points ``(x, y, z)``, voxels.

    Returns
    -------
    numpy.ndarray
        float64 ``[N]`` distances, voxels.
    """
    out = np.empty(pts.shape[0])
    for i in range(pts.shape[0]):
        out[i] = dist_only(pool, slots, shape, pts[i, 0], pts[i, 1], pts[i, 2])
    return out
