r"""The ground-truth sheet of a synthetic scroll and its numba evaluation.

The sheet is a rolled surface parameterised by the unwrapped angle ``theta`` (radians) and the
slice ``z`` (voxels):

.. math::
   S(\theta, z) = \big(c_x(z) + r(\theta,z)\cos\theta,\; c_y(z) + r(\theta,z)\sin\theta,\; z\big)

with a centre drifting linearly with ``z`` (:math:`c(z) = c_0 + a\,(z - z_c)`) and a radius that
grows by ``pitch`` voxels per turn plus waviness and local bumps (places where a wrap bulges
towards its outer neighbour):

.. math::
   r(\theta, z) = r_0 + \frac{\text{pitch}}{2\pi}(\theta-\theta_0) + \sum_i A_i \sin(k_i\theta + 2\pi q_i z/Z + \varphi_i)
                + \sum_b B_b\, e^{-\frac{(\theta-\theta_b)^2 r^2}{2\sigma_b^2} - \frac{(z-z_b)^2}{2\tau_b^2}}

``theta`` runs over ``[theta0, theta1]``; wrap index ``w = floor((theta - theta0) / 2pi)``.
Points are ``(x, y, z)`` voxels; volume arrays are ``[z, y, x]``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..kernels.solve import gauss_newton2

TWO_PI = 2.0 * math.pi

# layout of the flat parameter vector P (float64)
CX0, CY0, AX, AY, ZC, R0, PITCH, TH0, TH1, ZSIZE = range(10)
N_FIXED = 10
# waviness terms: (A, k, q, phase) × N_WAVE after the fixed block
N_WAVE = 2


@nb.njit(cache=True)
def radius(P, bumps, theta, z):
    """Sheet radius (voxels) at unwrapped angle ``theta`` and slice ``z``."""
    r = P[R0] + P[PITCH] * (theta - P[TH0]) / TWO_PI
    for i in range(N_WAVE):
        o = N_FIXED + 4 * i
        r += P[o] * math.sin(P[o + 1] * theta + TWO_PI * P[o + 2] * z / P[ZSIZE] + P[o + 3])
    for b in range(bumps.shape[0]):
        dth = theta - bumps[b, 0]
        if abs(dth) < 1.5:
            arc = dth * r
            dz = z - bumps[b, 1]
            r += bumps[b, 2] * math.exp(-arc * arc / (2 * bumps[b, 3] ** 2) - dz * dz / (2 * bumps[b, 4] ** 2))
    return r


@nb.njit(cache=True)
def sheet_point(P, bumps, theta, z):
    """(x, y, z) of the sheet at ``(theta, z)``."""
    r = radius(P, bumps, theta, z)
    cx = P[CX0] + P[AX] * (z - P[ZC])
    cy = P[CY0] + P[AY] * (z - P[ZC])
    return cx + r * math.cos(theta), cy + r * math.sin(theta), z


@nb.njit(cache=True)
def coarse_theta(P, bumps, x, y, z):
    """Unwrapped angle of the wrap radially nearest to ``(x, y, z)`` in its slice, and that radial gap."""
    cx = P[CX0] + P[AX] * (z - P[ZC])
    cy = P[CY0] + P[AY] * (z - P[ZC])
    dx, dy = x - cx, y - cy
    rho = math.sqrt(dx * dx + dy * dy)
    phi = math.atan2(dy, dx)
    # smallest unwrapped angle >= theta0 with this direction
    k0 = math.ceil((P[TH0] - phi) / TWO_PI)
    best, best_th = 1e30, P[TH0]
    th = phi + k0 * TWO_PI
    while th <= P[TH1]:
        d = abs(rho - radius(P, bumps, th, z))
        if d < best:
            best, best_th = d, th
        th += TWO_PI
    # the two free ends of the sheet (a point beyond an end is closest to the end itself)
    for k in range(2):
        te = P[TH0] if k == 0 else P[TH1]
        ex, ey, _ = sheet_point(P, bumps, te, z)
        d = math.sqrt((ex - x) ** 2 + (ey - y) ** 2)
        if d < best:
            best, best_th = d, te
    return best_th, best


@nb.njit(cache=True)
def nearest_on_sheet(P, bumps, x, y, z):
    """Closest sheet point to ``(x, y, z)``: returns ``(distance_voxels, theta, z_on_sheet)``.

    Coarse wrap choice in the slice, then Gauss-Newton on ``(theta, z')`` with finite-difference
    Jacobian; theta is clamped to ``[theta0, theta1]``.
    """
    th, _ = coarse_theta(P, bumps, x, y, z)
    zz = z
    for _ in range(12):
        h = 1e-4
        sx, sy, sz = sheet_point(P, bumps, th, zz)
        ax, ay, az = sheet_point(P, bumps, th + h, zz)
        bx, by, bz = sheet_point(P, bumps, th, zz + h)
        d0, d1, ok = gauss_newton2(sx, sy, sz, ax, ay, az, bx, by, bz, h, x, y, z, 1e-12)
        if not ok:
            break
        # limit the step so we stay on the chosen wrap
        lim = 0.5
        if d0 > lim:
            d0 = lim
        elif d0 < -lim:
            d0 = -lim
        th -= d0
        zz -= d1
        if th < P[TH0]:
            th = P[TH0]
        if th > P[TH1]:
            th = P[TH1]
        if abs(d0) < 1e-7 and abs(d1) < 1e-5:
            break
    sx, sy, sz = sheet_point(P, bumps, th, zz)
    dist = math.sqrt((sx - x) ** 2 + (sy - y) ** 2 + (sz - z) ** 2)
    return dist, th, zz


@nb.njit(cache=True, parallel=True)
def nearest_many(P, bumps, pts):
    """Vectorised :func:`nearest_on_sheet` over ``pts`` (N×3, (x, y, z)) → (dist[N], theta[N])."""
    n = pts.shape[0]
    dist = np.empty(n)
    theta = np.empty(n)
    for i in nb.prange(n):
        d, th, _ = nearest_on_sheet(P, bumps, pts[i, 0], pts[i, 1], pts[i, 2])
        dist[i] = d
        theta[i] = th
    return dist, theta


@nb.njit(cache=True)
def _in_ellipses(feat, theta, z, r):
    """True if sheet coordinate ``(theta, z)`` lies in one of the ellipses ``feat[i] = (theta_c, z_c, arc_r, z_r)``."""
    for i in range(feat.shape[0]):
        da = (theta - feat[i, 0]) * r / feat[i, 2]
        dz = (z - feat[i, 1]) / feat[i, 3]
        if da * da + dz * dz <= 1.0:
            return True
    return False


@nb.njit(cache=True, parallel=True)
def render_block(P, bumps, holes, bridges, z0, shape_zyx, half_thickness, ct_sigma, want_ct):
    """Voxelise slices ``z0 .. z0+shape[0]`` of the scroll.

    Returns ``(pred, dist)``: ``pred`` uint8 [z, y, x] = 255 within ``half_thickness`` voxels of the
    sheet (outside holes) or of a false bridge; ``dist`` float32 [z, y, x] = approximate normal
    distance to the true sheet (radial gap × cos of the sheet's tilt) when ``want_ct``.
    ``bridges[i] = (theta_c, z_c, arc_length, half_height)``: a ramp leaving wrap w at ``theta_c``
    and reaching wrap w+1 after ``arc_length`` voxels.
    """
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    pred = np.zeros((nz, ny, nx), dtype=np.uint8)
    dist = np.zeros((nz, ny, nx) if want_ct else (1, 1, 1), dtype=np.float32)
    for iz in nb.prange(nz):
        z = float(z0 + iz)
        cx = P[CX0] + P[AX] * (z - P[ZC])
        cy = P[CY0] + P[AY] * (z - P[ZC])
        for iy in range(ny):
            dy = iy - cy
            for ix in range(nx):
                dx = ix - cx
                rho = math.sqrt(dx * dx + dy * dy)
                phi = math.atan2(dy, dx)
                k0 = math.ceil((P[TH0] - phi) / TWO_PI)
                th = phi + k0 * TWO_PI
                best = 1e30
                best_th = th
                while th <= P[TH1]:
                    rr = radius(P, bumps, th, z)
                    d = abs(rho - rr)
                    if d < best:
                        best, best_th = d, th
                    # bridges starting on this wrap
                    for b in range(bridges.shape[0]):
                        L = bridges[b, 2] / max(rr, 1.0)
                        u = (th - bridges[b, 0]) / L
                        if 0.0 <= u <= 1.0 and abs(z - bridges[b, 1]) <= bridges[b, 3]:
                            r_out = radius(P, bumps, th + TWO_PI, z)
                            rb = rr + (r_out - rr) * (3 * u * u - 2 * u * u * u)
                            if abs(rho - rb) <= half_thickness * 1.3:
                                pred[iz, iy, ix] = 255
                    th += TWO_PI
                # tilt correction: normal distance ≈ radial gap / sqrt(1 + (dr/ds)^2 + (dr/dz)^2)
                h = 1e-3
                r1 = radius(P, bumps, best_th, z)
                drds = (radius(P, bumps, best_th + h, z) - r1) / h / max(rho, 1.0)
                drdz = (radius(P, bumps, best_th, z + 0.5) - radius(P, bumps, best_th, z - 0.5))
                ax = P[AX] * math.cos(best_th) + P[AY] * math.sin(best_th)
                drdz += ax
                nd = best / math.sqrt(1.0 + drds * drds + drdz * drdz)
                if want_ct:
                    dist[iz, iy, ix] = nd
                if nd <= half_thickness and not _in_ellipses(holes, best_th, z, max(rho, 1.0)):
                    pred[iz, iy, ix] = 255
    return pred, dist
