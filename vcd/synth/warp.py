r"""Numba model of the *realistic* synthetic sheet: crushed, displaced, tilted and twisted spiral.

The sheet lives in a local frame ``(a, b, s)`` whose ``s`` axis is the scroll axis; the world point is
``C + R @ (a, b, s)`` (``R``: rotation tilting the axis away from +z, ``C``: the axis centre). In the
local frame, for unwrapped angle ``theta`` (radians) and axis coordinate ``s`` (voxels):

.. math::
   \varphi = \theta + \tau s, \qquad
   (a, b) = r(\theta, s)\,(\cos\varphi, \sin\varphi)

   r(\theta, s) = g(\varphi)\,\big(r_0 + \tfrac{p}{2\pi}(\theta - \theta_0)\big)
      + \sum_i A_i \sin(k_i\theta + 2\pi q_i s / Z + \phi_i) + \sum_b w_b\,\max(0, \Delta r - G_b)

   g(\varphi) = 1 + e\cos 2(\varphi - \varphi_e) + \delta\cos(\varphi - \varphi_d)

so the radial wrap spacing is ``p * g(phi)`` (crush ``e``, one-sided displacement ``delta``), ``tau`` is
the twist (radians per voxel of axis) and the weights ``w_b`` (1 for ``q_b <= 0.5``, smoothstep to 0 at
``q_b = 1``, ``q_b^2 = (arc/sigma_a)^2 + (ds/sigma_s)^2``) pull a wrap towards its outer neighbour until
their radial gap ``Delta r`` is ``G_b`` (fused zones). The half thickness of the
predicted band varies smoothly along the sheet (:func:`half_thick`).

Distances are exact: :func:`nearest_local` runs Gauss-Newton on ``(theta, s)`` from the radially
nearest three wraps and keeps the best (rotation preserves distances). Points are ``(x, y, z)``
voxels; arrays ``[z, y, x]``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..kernels.solve import gauss_newton2, lstsq2

TWO_PI = 2.0 * math.pi

# flat parameter vector layout (float64)
(CX, CY, CZ, R00, R01, R02, R10, R11, R12, R20, R21, R22, RAD0, PITCH, TH0, TH1, TAU, ELL, PHI_E, DISP, PHI_D,
 ZSIZE, HT_MEAN, HT_AMP, LAM1, PH1, LAM2, PH2, LAM3, LAM4, PH3, SOFT_W) = range(32)
WAVE0 = 32
N_WAVE = 2
N_PARAM = WAVE0 + 4 * N_WAVE
FUSED_CORE = 0.5  #: fused zones hold their gap exactly out to half their extent


@nb.njit(cache=True)
def shape_g(P, phi):
    """Spacing factor ``g(phi)``: radial wrap spacing is ``pitch * g`` in direction ``phi``."""
    return 1.0 + P[ELL] * math.cos(2.0 * (phi - P[PHI_E])) + P[DISP] * math.cos(phi - P[PHI_D])


@nb.njit(cache=True)
def base_rho(P, theta):
    return P[RAD0] + P[PITCH] * (theta - P[TH0]) / TWO_PI


@nb.njit(cache=True)
def radius_plain(P, theta, s):
    """Local-frame radius (voxels) without fused zones."""
    r = shape_g(P, theta + P[TAU] * s) * base_rho(P, theta)
    for i in range(N_WAVE):
        o = WAVE0 + 4 * i
        r += P[o] * math.sin(P[o + 1] * theta + TWO_PI * P[o + 2] * s / P[ZSIZE] + P[o + 3])
    return r


@nb.njit(cache=True)
def radius_plain_grad(P, theta, s):
    """:func:`radius_plain` and its partial derivatives: ``(r, dr/dtheta, dr/ds)`` (voxels, voxels per
    radian, voxels per voxel of axis), from ``dg/dphi = -2e sin 2(phi - phi_e) - delta sin(phi - phi_d)``
    and ``dphi/ds = tau``."""
    phi = theta + P[TAU] * s
    u, v = 2.0 * (phi - P[PHI_E]), phi - P[PHI_D]
    g = 1.0 + P[ELL] * math.cos(u) + P[DISP] * math.cos(v)
    dg = -2.0 * P[ELL] * math.sin(u) - P[DISP] * math.sin(v)
    rho = base_rho(P, theta)
    r, r_th, r_s = g * rho, dg * rho + g * P[PITCH] / TWO_PI, dg * P[TAU] * rho
    for i in range(N_WAVE):
        o = WAVE0 + 4 * i
        k_s = TWO_PI * P[o + 2] / P[ZSIZE]
        w = P[o + 1] * theta + k_s * s + P[o + 3]
        r += P[o] * math.sin(w)
        c = P[o] * math.cos(w)
        r_th += c * P[o + 1]
        r_s += c * k_s
    return r, r_th, r_s


@nb.njit(cache=True)
def _fused_q2(bumps, b, theta, s, rho):
    """``q^2`` of fused zone ``b`` at ``(theta, s)`` (see :func:`radius`; ``rho``: :func:`base_rho` at
    ``theta``), or inf where the zone's arc extent already rules it out."""
    arc = (theta - bumps[b, 0]) * rho
    if not abs(arc) < bumps[b, 3]:
        return np.inf
    ds = s - bumps[b, 1]
    return (arc / bumps[b, 3]) ** 2 + (ds / bumps[b, 4]) ** 2


@nb.njit(cache=True)
def in_fused_zone(P, bumps, theta, s):
    """True where a fused zone of ``bumps`` (see :func:`radius`) changes the radius at ``(theta, s)``."""
    rho = base_rho(P, theta)
    for b in range(bumps.shape[0]):
        if _fused_q2(bumps, b, theta, s, rho) < 1.0:
            return True
    return False


@nb.njit(cache=True)
def radius(P, bumps, theta, s):
    """Local-frame radius (voxels) of the sheet at unwrapped angle ``theta`` and axis coordinate ``s``.

    ``bumps[b] = (theta_b, s_b, radial_gap, sigma_arc, sigma_s)``: a fused zone pulling the wrap of
    ``theta_b`` towards its outer neighbour until their radial gap is ``radial_gap`` — exactly within
    ``q <= FUSED_CORE`` (``q^2 = (arc/sigma_arc)^2 + (ds/sigma_s)^2``), easing off to nothing at ``q = 1``."""
    r0 = radius_plain(P, theta, s)
    r = r0
    if bumps.shape[0] > 0:
        rho = base_rho(P, theta)
        for b in range(bumps.shape[0]):
            q = math.sqrt(_fused_q2(bumps, b, theta, s, rho))
            if q < 1.0:
                x = min(1.0, (1.0 - q) / (1.0 - FUSED_CORE))
                gap = radius_plain(P, theta + TWO_PI, s) - r0
                r += x * x * (3.0 - 2.0 * x) * max(0.0, gap - bumps[b, 2])
    return r


@nb.njit(cache=True)
def local_point(P, bumps, theta, s):
    phi = theta + P[TAU] * s
    r = radius(P, bumps, theta, s)
    return r * math.cos(phi), r * math.sin(phi), s


@nb.njit(cache=True)
def to_world(P, a, b, s):
    return (P[CX] + P[R00] * a + P[R01] * b + P[R02] * s,
            P[CY] + P[R10] * a + P[R11] * b + P[R12] * s,
            P[CZ] + P[R20] * a + P[R21] * b + P[R22] * s)


@nb.njit(cache=True)
def to_local(P, x, y, z):
    dx, dy, dz = x - P[CX], y - P[CY], z - P[CZ]
    return (P[R00] * dx + P[R10] * dy + P[R20] * dz,
            P[R01] * dx + P[R11] * dy + P[R21] * dz,
            P[R02] * dx + P[R12] * dy + P[R22] * dz)


@nb.njit(cache=True)
def world_point(P, bumps, theta, s):
    a, b, s2 = local_point(P, bumps, theta, s)
    return to_world(P, a, b, s2)


@nb.njit(cache=True)
def s_for_z(P, bumps, theta, z):
    """Axis coordinate ``s`` at which the sheet point of angle ``theta`` has world ``z`` (fixed point)."""
    s = (z - P[CZ]) / P[R22]
    for _ in range(60):
        a, b, _s = local_point(P, bumps, theta, s)
        s_new = (z - P[CZ] - P[R20] * a - P[R21] * b) / P[R22]
        if abs(s_new - s) < 1e-10:
            return s_new
        s = s_new
    return s


@nb.njit(cache=True)
def half_thick(P, theta, s):
    """Half thickness (voxels) of the predicted band at ``(theta, s)``: smooth along the sheet."""
    t = theta - P[TH0]
    ell = P[RAD0] * t + P[PITCH] * t * t / (2.0 * TWO_PI)  # ≈ arc length from the inner end
    f = 0.5 * (math.sin(TWO_PI * ell / P[LAM1] + P[PH1]) * math.cos(TWO_PI * s / P[LAM2] + P[PH2])
               + math.sin(TWO_PI * ell / P[LAM3] + TWO_PI * s / P[LAM4] + P[PH3]))
    return P[HT_MEAN] + P[HT_AMP] * f


@nb.njit(cache=True)
def half_thick_many(P, theta, s):
    out = np.empty(theta.shape[0])
    for i in range(theta.shape[0]):
        out[i] = half_thick(P, theta[i], s[i])
    return out


@nb.njit(cache=True)
def project_local(P, bumps, a, b, s, th, ss, tol=1e-8):
    """Gauss-Newton from ``(th, ss)`` to the closest sheet point to local ``(a, b, s)`` on that wrap.

    Returns ``(distance, theta, s_on_sheet)``; theta is clamped to ``[theta0, theta1]``; stops when a step
    moves the point less than ``tol`` voxels. The Jacobian is exact (:func:`radius_plain_grad`) except
    inside a fused zone, where it is taken by forward differences."""
    for _ in range(30):
        if bumps.shape[0] > 0 and in_fused_zone(P, bumps, th, ss):  # forward differences
            h = 1e-5
            px, py, pz = local_point(P, bumps, th, ss)
            ax, ay, az = local_point(P, bumps, th + h, ss)
            bx, by, bz = local_point(P, bumps, th, ss + h)
            d0, d1, ok = gauss_newton2(px, py, pz, ax, ay, az, bx, by, bz, h, a, b, s, 1e-14)
        else:  # the exact Jacobian of (r cos phi, r sin phi, s)
            r, r_th, r_s = radius_plain_grad(P, th, ss)
            phi = th + P[TAU] * ss
            c, sn = math.cos(phi), math.sin(phi)
            rt = r * P[TAU]
            d0, d1, ok = lstsq2(r_th * c - r * sn, r_th * sn + r * c, 0.0, r_s * c - rt * sn, r_s * sn + rt * c, 1.0,
                                r * c - a, r * sn - b, ss - s, 1e-14)
        if not ok:
            break
        lim = 0.3
        if d0 > lim:
            d0 = lim
        elif d0 < -lim:
            d0 = -lim
        if d1 > 5.0:
            d1 = 5.0
        elif d1 < -5.0:
            d1 = -5.0
        th -= d0
        ss -= d1
        th = min(max(th, P[TH0]), P[TH1])
        if abs(d0) * max(base_rho(P, th), 1.0) < tol and abs(d1) < tol:
            break
    px, py, pz = local_point(P, bumps, th, ss)
    return math.sqrt((px - a) ** 2 + (py - b) ** 2 + (pz - s) ** 2), th, ss


@nb.njit(cache=True)
def nearest_local(P, bumps, a, b, s):
    """Closest sheet point to local ``(a, b, s)``: ``(distance, theta, s)``; tries the 3 radially
    nearest wraps (and both free ends)."""
    rho = math.sqrt(a * a + b * b)
    base = math.atan2(b, a) - P[TAU] * s
    th = base + math.ceil((P[TH0] - base) / TWO_PI) * TWO_PI
    c_th = np.full(3, P[TH0])
    c_d = np.full(3, 1e30)
    while th <= P[TH1]:
        d = abs(rho - radius(P, bumps, th, s))
        j = int(np.argmax(c_d))
        if d < c_d[j]:
            c_d[j] = d
            c_th[j] = th
        if radius(P, bumps, th, s) - rho > c_d.max() + 2 * P[PITCH]:
            break
        th += TWO_PI
    best, bth, bs = 1e30, P[TH0], s
    for j in range(3):
        if c_d[j] < 1e29:
            d, t1, s1 = project_local(P, bumps, a, b, s, c_th[j], s)
            if d < best:
                best, bth, bs = d, t1, s1
    for te in (P[TH0], P[TH1]):
        d, t1, s1 = project_local(P, bumps, a, b, s, te, s)
        if d < best:
            best, bth, bs = d, t1, s1
    if best > 1.5:  # far from the sheet: the closest point may lie off the radial direction; restart around
        r = best
        for j in range(3):
            if c_d[j] < 1e29:
                for k in range(4):
                    dt = (1.0 if k % 2 == 0 else -1.0) * r / max(rho, 1.0)
                    dsz = (1.0 if k < 2 else -1.0) * r
                    d, t1, s1 = project_local(P, bumps, a, b, s, c_th[j] + dt, s + dsz)
                    if d < best:
                        best, bth, bs = d, t1, s1
    return best, bth, bs


@nb.njit(cache=True, parallel=True)
def nearest_many(P, bumps, pts):
    """Exact distance (voxels), theta and axis coordinate of the closest sheet point for N×3 world (x, y, z)."""
    n = pts.shape[0]
    dist, theta, ss = np.empty(n), np.empty(n), np.empty(n)
    for i in nb.prange(n):
        a, b, s = to_local(P, pts[i, 0], pts[i, 1], pts[i, 2])
        dist[i], theta[i], ss[i] = nearest_local(P, bumps, a, b, s)
    return dist, theta, ss


@nb.njit(cache=True, parallel=True)
def project_many(P, bumps, pts, theta_init):
    """Distance from each world point to the wrap containing ``theta_init[i]`` (local minimum near it)."""
    n = pts.shape[0]
    dist, theta = np.empty(n), np.empty(n)
    for i in nb.prange(n):
        a, b, s = to_local(P, pts[i, 0], pts[i, 1], pts[i, 2])
        dist[i], theta[i], _ = project_local(P, bumps, a, b, s, theta_init[i], s)
    return dist, theta


@nb.njit(cache=True, parallel=True)
def points_at(P, bumps, theta, z):
    """World points of the sheet at ``(theta[i], world z[i])`` → (N×3, s[N])."""
    n = theta.shape[0]
    out = np.empty((n, 3))
    ss = np.empty(n)
    for i in nb.prange(n):
        s = s_for_z(P, bumps, theta[i], z[i])
        out[i, 0], out[i, 1], out[i, 2] = world_point(P, bumps, theta[i], s)
        ss[i] = s
    return out, ss


@nb.njit(cache=True)
def sample_sheet(P, bumps, zs, spacing, lo, hi):
    """Points on the sheet at world slices ``zs``, ≈ ``spacing`` voxels of arc apart, inside the box
    ``lo <= (x, y) <= hi``. Returns (N×3 points, theta[N])."""
    pts, ths = [], []
    for z in zs:
        th = P[TH0]
        while th <= P[TH1]:
            s = s_for_z(P, bumps, th, z)
            x, y, zz = world_point(P, bumps, th, s)
            if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1]:
                pts.append((x, y, zz))
                ths.append(th)
            th += spacing / max(radius(P, bumps, th, s), 1.0)
    out = np.empty((len(pts), 3))
    for i in range(len(pts)):
        out[i, 0], out[i, 1], out[i, 2] = pts[i]
    return out, np.array(ths)


@nb.njit(cache=True)
def _in_ellipse(feat, i, theta, s, rho):
    da = (theta - feat[i, 0]) * rho / feat[i, 2]
    dz = (s - feat[i, 1]) / feat[i, 3]
    return da * da + dz * dz <= 1.0


@nb.njit(cache=True)
def normal_gap(P, bumps, theta, s, rho, radial):
    """Radial gap → distance along the normal (first order, like the classic presets' renderer)."""
    h = 1e-3
    r1 = radius(P, bumps, theta, s)
    drdphi = (radius(P, bumps, theta + h, s) - r1) / h / max(r1, 1.0)  # slope at the sheet, not at the voxel
    tau = P[TAU]
    drds = (radius(P, bumps, theta - tau * 0.5, s + 0.5) - radius(P, bumps, theta + tau * 0.5, s - 0.5))
    return radial / math.sqrt(1.0 + drdphi * drdphi + drds * drds)


@nb.njit(cache=True)
def band_value(nd, ht, soft, width):
    """Prediction value (0..255) at normal distance ``nd`` from a band of half thickness ``ht``.
    Soft: linear falloff of ``width`` voxels with 170 (VC3D's threshold) exactly at ``nd == ht``."""
    if not soft:
        return 255.0 if nd <= ht else 0.0
    v = 2.0 / 3.0 - (nd - ht) / width
    return 255.0 * min(max(v, 0.0), 1.0)


@nb.njit(cache=True)
def _fragments(P, bumps, frags, theta, s, rho, rr, soft):
    """Prediction value of false fragments starting on the wrap of ``theta`` (radius ``rr``)."""
    best = 0.0
    for f in range(frags.shape[0]):
        if _in_ellipse(frags, f, theta, s, rr):
            r_out = radius(P, bumps, theta + TWO_PI, s)
            rf = rr + frags[f, 4] * (r_out - rr)
            nd = normal_gap(P, bumps, theta, s, rho, abs(rho - rf))
            best = max(best, band_value(nd, frags[f, 5], soft, P[SOFT_W]))
    return best


@nb.njit(cache=True, parallel=True)
def render_block(P, bumps, holes, frags, z0, shape_zyx, soft, want_dist):
    """Voxelise world slices ``z0 .. z0+shape[0]`` → ``(pred uint8 [z, y, x], normal distance float32)``.

    Voxels near the band get their exact distance (Gauss-Newton from the radially nearest wrap), so the
    band is ``distance <= half_thick`` at the closest sheet point; farther voxels keep the first-order
    normal distance (radial gap × cos of the sheet's slope).
    ``holes[i] = (theta, s, arc_radius, s_radius)`` remove the sheet; ``frags[i] = (theta, s, arc_radius,
    s_radius, frac, half_thickness)`` add a false band ``frac`` of the way to the next wrap outward."""
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    pred = np.zeros((nz, ny, nx), dtype=np.uint8)
    dist = np.zeros((nz, ny, nx) if want_dist else (1, 1, 1), dtype=np.float32)
    reach = 1.5 + (P[SOFT_W] if soft else 0.0)
    for iz in nb.prange(nz):
        for iy in range(ny):
            for ix in range(nx):
                a, b, s = to_local(P, float(ix), float(iy), float(z0 + iz))
                rho = math.sqrt(a * a + b * b)
                base = math.atan2(b, a) - P[TAU] * s
                th = base + math.ceil((P[TH0] - base) / TWO_PI) * TWO_PI
                best, best_th, frag = 1e30, th, 0.0
                while th <= P[TH1]:
                    rr = radius(P, bumps, th, s)
                    if abs(rho - rr) < best:
                        best, best_th = abs(rho - rr), th
                    if frags.shape[0] > 0 and rr < rho:
                        frag = max(frag, _fragments(P, bumps, frags, th, s, rho, rr, soft))
                    if rr - rho > best:
                        break
                    th += TWO_PI
                nd = best
                ht = half_thick(P, best_th, s)
                hs = best_th
                # the first-order distance is the radial gap over sqrt(1 + slope²) >= 1: never more than the
                # gap, so a voxel radially within reach is near without computing it
                near = best <= ht + reach
                if not near:
                    nd = normal_gap(P, bumps, best_th, s, rho, best)
                    near = nd <= ht + reach
                if near:  # near the band: the exact distance, so the band is exact
                    nd, hs, s2 = project_local(P, bumps, a, b, s, best_th, s, 1e-4)
                    ht = half_thick(P, hs, s2)
                if want_dist:
                    dist[iz, iy, ix] = nd
                v = band_value(nd, ht, soft, P[SOFT_W])
                if v > 0:
                    for h in range(holes.shape[0]):
                        if _in_ellipse(holes, h, hs, s, max(rho, 1.0)):
                            v = 0.0
                            break
                v = max(v, frag)
                pred[iz, iy, ix] = np.uint8(v + 0.5)
    return pred, dist
