"""Trilinear sampling of volumes, dense or chunk-cached, callable from other numba kernels.

Convention (VC3D's): voxel centres sit at integer coordinates; for a coordinate ``c`` the weights
come from ``i = floor(c)`` and ``f = c - i``:

.. math:: v(x,y,z) = \\sum_{a,b,c \\in \\{0,1\\}} w_a(f_x) w_b(f_y) w_c(f_z)\\, V[i_z+c, i_y+b, i_x+a],
          \\quad w_0(f) = 1-f,\\ w_1(f) = f

Points are ``(x, y, z)``; arrays are indexed ``[z, y, x]``. Any voxel outside the array (or in a
chunk that is absent) reads 0 — VC3D's rule for missing data.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def cell_of(x, y, z):
    """The voxel cell of a point ``(x, y, z)``: its lower corner ``(ix, iy, iz)`` (``floor``) and the
    fractions ``(fx, fy, fz)`` in ``[0, 1)`` — the split every trilinear read starts from."""
    fx, fy, fz = np.floor(x), np.floor(y), np.floor(z)
    return int(fx), int(fy), int(fz), x - fx, y - fy, z - fz


@nb.njit(cache=True, inline="always")
def trilinear_blend(c000, c001, c010, c011, c100, c101, c110, c111, fx, fy, fz):
    """The one trilinear interpolation of the kernels: value and analytic gradient
    ``(v, dv/dx, dv/dy, dv/dz)`` (per voxel) of a cell's eight corner values at the fractions
    ``(fx, fy, fz)``. Corner ``cZYX`` is the voxel ``[iz + Z, iy + Y, ix + X]``. Inlined into its
    callers, so a caller that uses only the value pays nothing for the gradient."""
    c00 = c000 + (c001 - c000) * fx
    c01 = c010 + (c011 - c010) * fx
    c10 = c100 + (c101 - c100) * fx
    c11 = c110 + (c111 - c110) * fx
    c0 = c00 + (c01 - c00) * fy
    c1 = c10 + (c11 - c10) * fy
    v = c0 + (c1 - c0) * fz
    gz = c1 - c0
    gy = (c01 - c00) * (1 - fz) + (c11 - c10) * fz
    gx = ((c001 - c000) * (1 - fy) + (c011 - c010) * fy) * (1 - fz) + \
         ((c101 - c100) * (1 - fy) + (c111 - c110) * fy) * fz
    return v, gx, gy, gz


@nb.njit(cache=True, inline="always")
def _voxel_dense(vol, iz, iy, ix):
    if iz < 0 or iy < 0 or ix < 0 or iz >= vol.shape[0] or iy >= vol.shape[1] or ix >= vol.shape[2]:
        return 0.0
    return float(vol[iz, iy, ix])


@nb.njit(cache=True)
def trilinear_dense(vol, x, y, z):
    """Sample the dense ``[z, y, x]`` array ``vol`` at the point ``(x, y, z)`` (voxels)."""
    ix, iy, iz, fx, fy, fz = cell_of(x, y, z)
    v, _, _, _ = trilinear_blend(
        _voxel_dense(vol, iz, iy, ix), _voxel_dense(vol, iz, iy, ix + 1),
        _voxel_dense(vol, iz, iy + 1, ix), _voxel_dense(vol, iz, iy + 1, ix + 1),
        _voxel_dense(vol, iz + 1, iy, ix), _voxel_dense(vol, iz + 1, iy, ix + 1),
        _voxel_dense(vol, iz + 1, iy + 1, ix), _voxel_dense(vol, iz + 1, iy + 1, ix + 1), fx, fy, fz)
    return v


@nb.njit(cache=True)
def sample_dense(vol, pts):
    """Trilinear samples of a dense volume at many points.

    Parameters
    ----------
    vol : numpy.ndarray
        ``[z, y, x]`` voxel values.
    pts : numpy.ndarray
        float ``[N, 3]`` points ``(x, y, z)``, voxels (outside the array reads 0).

    Returns
    -------
    numpy.ndarray
        float32 ``[N]`` values.
    """
    out = np.empty(pts.shape[0], dtype=np.float32)
    for i in range(pts.shape[0]):
        out[i] = trilinear_dense(vol, pts[i, 0], pts[i, 1], pts[i, 2])
    return out


@nb.njit(cache=True, inline="always")
def one_chunk_cell(slots, cs, shape, ix, iy, iz):
    """The fast case of a chunked read: the slot of the one loaded chunk that holds all eight voxels
    of the cell with lower corner ``(ix, iy, iz)`` and the corner's offsets ``(bz, by, bx)`` in it;
    slot ``-1`` when the cell straddles a chunk border, leaves the volume or its chunk is not loaded
    (the caller then reads voxel by voxel). ``cs`` and ``shape`` are (z, y, x)."""
    if ix < 0 or iy < 0 or iz < 0 or iz + 1 >= shape[0] or iy + 1 >= shape[1] or ix + 1 >= shape[2]:
        return -1, 0, 0, 0
    cz, cy, cx = iz // cs[0], iy // cs[1], ix // cs[2]
    bz, by, bx = iz - cz * cs[0], iy - cy * cs[1], ix - cx * cs[2]
    if bz + 1 >= cs[0] or by + 1 >= cs[1] or bx + 1 >= cs[2]:
        return -1, 0, 0, 0
    s = slots[cz, cy, cx]
    return (s if s >= 0 else -1), bz, by, bx


@nb.njit(cache=True, inline="always")
def blend_in_chunk(pool, s, bz, by, bx, fx, fy, fz):
    """:func:`trilinear_blend` of the cell at offsets ``(bz, by, bx)`` of chunk slot ``s`` (all eight
    voxels inside it, as :func:`one_chunk_cell` found)."""
    return trilinear_blend(
        float(pool[s, bz, by, bx]), float(pool[s, bz, by, bx + 1]),
        float(pool[s, bz, by + 1, bx]), float(pool[s, bz, by + 1, bx + 1]),
        float(pool[s, bz + 1, by, bx]), float(pool[s, bz + 1, by, bx + 1]),
        float(pool[s, bz + 1, by + 1, bx]), float(pool[s, bz + 1, by + 1, bx + 1]), fx, fy, fz)


@nb.njit(cache=True, inline="always")
def _voxel_chunked(pool, slots, cs, shape, iz, iy, ix):
    if iz < 0 or iy < 0 or ix < 0 or iz >= shape[0] or iy >= shape[1] or ix >= shape[2]:
        return 0.0
    s = slots[iz // cs[0], iy // cs[1], ix // cs[2]]
    if s < 0:
        return 0.0
    return float(pool[s, iz % cs[0], iy % cs[1], ix % cs[2]])


@nb.njit(cache=True)
def trilinear_chunked(pool, slots, cs, shape, x, y, z):
    """Sample a chunk-cached volume at ``(x, y, z)``.

    ``pool[slot, z, y, x]`` holds loaded chunks, ``slots[cz, cy, cx]`` maps a chunk to its slot
    (negative = absent/not loaded → 0), ``cs`` is the chunk shape (z, y, x), ``shape`` the volume
    shape (z, y, x).
    """
    ix, iy, iz, fx, fy, fz = cell_of(x, y, z)
    s, bz, by, bx = one_chunk_cell(slots, cs, shape, ix, iy, iz)
    if s >= 0:
        v, _, _, _ = blend_in_chunk(pool, s, bz, by, bx, fx, fy, fz)
        return v
    v, _, _, _ = trilinear_blend(
        _voxel_chunked(pool, slots, cs, shape, iz, iy, ix), _voxel_chunked(pool, slots, cs, shape, iz, iy, ix + 1),
        _voxel_chunked(pool, slots, cs, shape, iz, iy + 1, ix), _voxel_chunked(pool, slots, cs, shape, iz, iy + 1, ix + 1),
        _voxel_chunked(pool, slots, cs, shape, iz + 1, iy, ix), _voxel_chunked(pool, slots, cs, shape, iz + 1, iy, ix + 1),
        _voxel_chunked(pool, slots, cs, shape, iz + 1, iy + 1, ix),
        _voxel_chunked(pool, slots, cs, shape, iz + 1, iy + 1, ix + 1), fx, fy, fz)
    return v


@nb.njit(cache=True)
def sample_chunked(pool, slots, cs, shape, pts):
    """Trilinear samples of a chunk-cached volume at many points.

    Parameters
    ----------
    pool : numpy.ndarray
        ``[slot, z, y, x]`` loaded chunks.
    slots : numpy.ndarray
        int ``[cz, cy, cx]``: each chunk's slot, negative = not loaded (reads 0).
    cs : tuple of int
        Chunk shape ``(z, y, x)``.
    shape : tuple of int
        Volume shape ``(z, y, x)``.
    pts : numpy.ndarray
        float ``[N, 3]`` points ``(x, y, z)``, voxels.

    Returns
    -------
    numpy.ndarray
        float32 ``[N]`` values.
    """
    out = np.empty(pts.shape[0], dtype=np.float32)
    for i in range(pts.shape[0]):
        out[i] = trilinear_chunked(pool, slots, cs, shape, pts[i, 0], pts[i, 1], pts[i, 2])
    return out


@nb.njit(cache=True)
def mark_chunks(pts, cs, shape, grid_shape):
    """bool [cz, cy, cx] grid: True for every chunk a trilinear sample at ``pts`` (N×3, (x, y, z)) touches."""
    out = np.zeros((grid_shape[0], grid_shape[1], grid_shape[2]), dtype=np.bool_)
    for i in range(pts.shape[0]):
        ix, iy, iz, _, _, _ = cell_of(pts[i, 0], pts[i, 1], pts[i, 2])
        for dz in range(2):
            zz = iz + dz
            if zz < 0 or zz >= shape[0]:
                continue
            for dy in range(2):
                yy = iy + dy
                if yy < 0 or yy >= shape[1]:
                    continue
                for dx in range(2):
                    xx = ix + dx
                    if xx < 0 or xx >= shape[2]:
                        continue
                    out[zz // cs[0], yy // cs[1], xx // cs[2]] = True
    return out
