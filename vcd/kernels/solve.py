"""Small dense solves shared by kernels (numba, inlined into their callers)."""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True, inline="always")
def lstsq2(ax, ay, az, bx, by, bz, rx, ry, rz, min_det, rel_det=0.0):
    """The ``(s, t)`` minimising ``|s·a + t·b − r|²`` for 3-vectors ``a``, ``b``, ``r`` (normal
    equations of the 3×2 system ``[a b]``): the Gauss-Newton step of a two-parameter fit, or the
    plane coordinates of ``r`` over the edges ``a``, ``b`` of a triangle. Returns ``(s, t, ok)``;
    ``ok`` is False (and ``s = t = 0``) when ``det = |a|²|b|² − (a·b)²`` is at most ``min_det`` or
    at most ``rel_det·|a|²|b|²`` (``a``, ``b`` parallel or zero; a NaN ``det`` too)."""
    A = ax * ax + ay * ay + az * az
    B = ax * bx + ay * by + az * bz
    C = bx * bx + by * by + bz * bz
    g0 = ax * rx + ay * ry + az * rz
    g1 = bx * rx + by * ry + bz * rz
    det = A * C - B * B
    if det <= min_det or not det > rel_det * A * C:
        return 0.0, 0.0, False
    return (C * g0 - B * g1) / det, (A * g1 - B * g0) / det, True


@nb.njit(cache=True, inline="always")
def gauss_newton2(fx, fy, fz, ux, uy, uz, vx, vy, vz, h, tx, ty, tz, min_det):
    """One Gauss-Newton step ``(du, dv, ok)`` to subtract from ``(u, v)`` that brings a two-parameter
    map ``f(u, v) -> (x, y, z)`` closest to the target ``t``, from ``f(u, v)``, ``f(u + h, v)`` and
    ``f(u, v + h)`` (forward differences of step ``h``); ``ok`` as in :func:`lstsq2`."""
    return lstsq2((ux - fx) / h, (uy - fy) / h, (uz - fz) / h, (vx - fx) / h, (vy - fy) / h, (vz - fz) / h,
                  fx - tx, fy - ty, fz - tz, min_det)
