r"""Windowed least-squares regularisation of a trace's corner grid (numba).

Corners ``x[r, c]`` ((x, y, z) voxels, grid spacing ``S``) minimise

.. math::

    E = \sum_{(i,j) \in N_8} w_d \Big(\frac{\lVert x_i - x_j\rVert}{d_{ij}} - 1\Big)^2
      + \sum_{(a,b,c)} \frac{w_s}{S^2} \lVert x_a - 2x_b + x_c \rVert^2
      + \sum_i \frac{w_z}{S^2} (z_i - z_t(r_i))^2
      + \sum_i w_n \big(n_i \cdot (x_i - p_i)\big)^2

- *distance* (VC3D's DistLoss3D): every 8-neighbour pair at its nominal spacing
  ``d = S`` (axial) or ``S·√2`` (diagonal), weight ``dist_loss_3d_w``;
- *straightness* (linearised StraightLoss3D): the second difference of every horizontal,
  vertical and diagonal triplet, weight ``straight_weight_3D``;
- *z prior* (ZLocationLoss): row ``r`` lies at ``z_t(r)``, weight ``z_loc_loss_w``;
- *surface tie*: point-to-plane distance to the supporting patches (closest point ``p_i``, unit
  normal ``n_i``), weight ``w_n`` — corners slide *along* the sheet, not off it.

Solver: block Gauss–Newton / Gauss–Seidel. Each sweep visits the free corners in order and solves
the 3×3 normal equations :math:`(J^T J + \lambda I)\,\delta = -J^T r` of all residuals touching
that corner with its neighbours fixed (Levenberg damping ``λ``). Each block step cannot increase
the convex-in-x terms and the sweep converges like nonlinear Gauss–Seidel; a handful of sweeps
per window is enough because the grid starts close to regular.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_OFFS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


@nb.njit(cache=True)
def _accumulate_dist(A, g, xi, xj, d0, w):
    dx, dy, dz = xi[0] - xj[0], xi[1] - xj[1], xi[2] - xj[2]
    L = math.sqrt(dx * dx + dy * dy + dz * dz)
    if L < 1e-9:
        return
    sw = math.sqrt(w)
    res = sw * (L / d0 - 1.0)
    J0, J1, J2 = sw * dx / (L * d0), sw * dy / (L * d0), sw * dz / (L * d0)
    J = (J0, J1, J2)
    for a in range(3):
        g[a] += J[a] * res
        for b in range(3):
            A[a, b] += J[a] * J[b]


@nb.njit(cache=True)
def regularise_window(pos, free, valid, zt, anchor, normal, S, w_d, w_s, w_z, w_n, sweeps, lam):
    """Block Gauss–Newton sweeps over a window of a trace's corner grid (the energy in the module docstring).

    Parameters
    ----------
    pos : numpy.ndarray
        float64 ``[H, W, 3]`` corners ``(x, y, z)``, voxels.
    free : numpy.ndarray
        bool ``[H, W]``: corners to move.
    valid : numpy.ndarray
        bool ``[H, W]``: corners taking part (the non-free ones as fixed neighbours).
    zt : numpy.ndarray
        float64 ``[H]`` target z of each row, voxels.
    anchor, normal : numpy.ndarray
        float64 ``[H, W, 3]``: each free corner's closest patch point (voxels) and unit normal there.
    S : float
        Grid spacing, voxels.
    w_d, w_s, w_z, w_n : float
        Weights of the distance, straightness, z-prior and surface-tie terms.
    sweeps : int
        Gauss–Seidel sweeps.
    lam : float
        Levenberg damping.

    Returns
    -------
    numpy.ndarray
        float64 ``[H, W, 3]``: the new corner positions, voxels.
    """
    H, W = valid.shape
    x = pos.copy()
    A = np.zeros((3, 3))
    g = np.zeros(3)
    ws = w_s / (S * S)
    for _ in range(sweeps):
        for r in range(H):
            for c in range(W):
                if not free[r, c]:
                    continue
                A[:, :] = 0.0
                g[:] = 0.0
                xi = x[r, c]
                # distance to the 8 neighbours
                for k in range(8):
                    dr, dc = _OFFS[k]
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < H and 0 <= cc < W and valid[rr, cc]:
                        d0 = S if k < 4 else S * math.sqrt(2.0)
                        _accumulate_dist(A, g, xi, x[rr, cc], d0, w_d)
                # straightness: triplets in which (r, c) is the middle or an end, 4 directions
                for k in range(4):
                    dr, dc = _OFFS[k] if k < 2 else _OFFS[k + 2]
                    # middle: x_a - 2 x_i + x_c
                    ra, ca, rc_, cc_ = r - dr, c - dc, r + dr, c + dc
                    if 0 <= ra < H and 0 <= ca < W and 0 <= rc_ < H and 0 <= cc_ < W and valid[ra, ca] \
                            and valid[rc_, cc_]:
                        for a in range(3):
                            res = x[ra, ca, a] - 2.0 * xi[a] + x[rc_, cc_, a]
                            A[a, a] += 4.0 * ws
                            g[a] += -2.0 * ws * res
                    # ends: x_i - 2 x_b + x_c and its mirror
                    for sgn in (1, -1):
                        rb, cb, re, ce = r + sgn * dr, c + sgn * dc, r + 2 * sgn * dr, c + 2 * sgn * dc
                        if 0 <= re < H and 0 <= ce < W and 0 <= rb < H and 0 <= cb < W and valid[rb, cb] \
                                and valid[re, ce]:
                            for a in range(3):
                                res = xi[a] - 2.0 * x[rb, cb, a] + x[re, ce, a]
                                A[a, a] += ws
                                g[a] += ws * res
                # z prior
                A[2, 2] += w_z / (S * S)
                g[2] += w_z / (S * S) * (xi[2] - zt[r])
                # surface tie (point to plane)
                nx, ny, nz = normal[r, c, 0], normal[r, c, 1], normal[r, c, 2]
                res = nx * (xi[0] - anchor[r, c, 0]) + ny * (xi[1] - anchor[r, c, 1]) + nz * (xi[2] - anchor[r, c, 2])
                nv = (nx, ny, nz)
                for a in range(3):
                    g[a] += w_n * nv[a] * res
                    for b in range(3):
                        A[a, b] += w_n * nv[a] * nv[b]
                for a in range(3):
                    A[a, a] += lam
                delta = np.linalg.solve(A, -g)
                for a in range(3):
                    x[r, c, a] += delta[a]
    return x
