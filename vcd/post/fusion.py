r"""Fuse traces and fill holes (``vc_fill_quadmesh``), and upscale with grounding
(``vc_tiffxyz_upscale_grounding``).

**Fusion.** The first trace is the reference parameterisation. The output grid takes every
``trace_mul``-th reference point (scale = reference scale / ``trace_mul``). Each interior hole
(a cell not valid in the reference but enclosed by valid cells) is first predicted by biharmonic
inpainting — minimise :math:`\lVert L x\rVert^2` (``L`` the 5-point Laplacian) with the valid cells
fixed, which continues the sheet's curvature across the hole — and then *snapped* onto the
closest point of any other trace within ``wind_th``·step voxels, so the fill lies on traced data
where another trace covers the hole; what no trace covers stays inpainted. Other traces may run in
either direction and start at any winding: for each, ``w_ref ≈ s·w_other + o`` (``s = ±1``) is
estimated from reference points that also lie on it, and filled cells get the reference-aligned
winding. Outputs ``winding_exact.tif`` / ``winding.tif`` beside the fused surface.

**Grounding.** A fused/inpainted surface is upsampled ``factor`` times (bilinear) and each point
snapped onto the closest source-trace point within one output grid step, so the high-resolution
result sits on the traced data wherever it exists.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from ..errors import InputError
from ..formats.paramkeys import fields_from_dict
from ..formats.tifxyz import read_surface, timestamp_name, write_surface
from ..kernels.surfsearch import SurfaceSearch
from ..kernels.pointsearch import closest_on_grid


@dataclass
class FillParams:
    """``vc_fill_quadmesh`` params (VC3D's keys and defaults)."""

    trace_mul: int = 1
    dist_w: float = 0.3
    straight_w: float = 0.02
    surf_w: float = 0.1
    z_loc_loss_w: float = 0.0005
    wind_w: float = 100.0
    wind_th: float = 0.3
    inpaint_back_range: int = 40
    opt_w: int = 4

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "fill params", warn=None) -> "FillParams":
        """Build from a params JSON object (:func:`~vcd.formats.paramkeys.fields_from_dict`: wrong
        types are an InputError, unknown keys one warning each)."""
        return cls(**fields_from_dict(cls, d or {}, source, warn))


def biharmonic_fill(points: np.ndarray, valid: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Fill ``holes`` cells of a (x, y, z) grid by minimising the squared Laplacian (valid fixed)."""
    R, C = valid.shape
    n = R * C
    idx = np.arange(n).reshape(R, C)
    rows, cols, vals = [], [], []
    for r in range(R):
        for c in range(C):
            nb = [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)) if 0 <= r + dr < R and 0 <= c + dc < C]
            i = idx[r, c]
            rows.append(i)
            cols.append(i)
            vals.append(-float(len(nb)))
            for rr, cc in nb:
                rows.append(i)
                cols.append(idx[rr, cc])
                vals.append(1.0)
    L = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    use = (valid | holes).ravel()
    A = (L[:, use]).tocsc()
    Q = (A.T @ A).tocsc()
    sub = np.nonzero(use)[0]
    unk = holes.ravel()[sub]
    kn = valid.ravel()[sub]
    out = points.astype(np.float64).copy()
    if not unk.any():
        return out
    Quu = Q[unk][:, unk]
    Quk = Q[unk][:, kn]
    flat = out.reshape(-1, 3)
    for a in range(3):
        xk = flat[sub[kn], a]
        xu = spsolve(Quu.tocsc(), -Quk @ xk)
        flat[sub[unk], a] = xu
    return out


def interior_holes(valid: np.ndarray) -> np.ndarray:
    """bool ``[rows, cols]``: invalid cells enclosed by the valid ones (the holes fusion inpaints)."""
    return ndimage.binary_fill_holes(valid) & ~valid


def _winding_at(w: np.ndarray, loc: np.ndarray) -> np.ndarray:
    r = np.clip(np.round(loc[:, 0]).astype(int), 0, w.shape[0] - 1)
    c = np.clip(np.round(loc[:, 1]).astype(int), 0, w.shape[1] - 1)
    return w[r, c]


def _align_winding(ref_pts, ref_w, other: SurfaceSearch, other_w, tol):
    """(sign, offset, n) with ``w_ref ≈ sign·w_other + offset`` from reference points lying on ``other``."""
    if other.tree is None or ref_w is None or other_w is None:
        return 1.0, 0.0, 0
    k = min(4, len(other.rc))
    _, idx = other.tree.query(ref_pts, k=k)
    idx = np.asarray(idx).reshape(len(ref_pts), k)
    d, _, loc = closest_on_grid(other.grid, other.valid, np.ascontiguousarray(ref_pts), other.rc[idx, 0], other.rc[idx, 1])
    on = d <= tol
    if on.sum() < 3:
        return 1.0, 0.0, int(on.sum())
    wo = _winding_at(other_w, loc[on])
    wr = ref_w[on]
    best = None
    for s in (1.0, -1.0):
        o = float(np.median(wr - s * wo))
        err = float(np.median(np.abs(wr - s * wo - o)))
        if best is None or err < best[3]:
            best = (s, o, int(on.sum()), err)
    return best[:3]


def fill_quadmesh(params: dict, inputs: list[tuple[str, str | None, float]], out_dir: str | os.PathLike | None = None,
                  progress=None) -> dict:
    """Fuse ``inputs`` = [(trace dir, winding.tif or None, weight), ...] into ``fuse_fill_<ts>``."""
    if not inputs:
        raise InputError(None, "no traces given", "pass TRACE WINDING WEIGHT triples")
    p = FillParams.from_dict(params)
    traces = [read_surface(t) for t, _, _ in inputs]
    winds = [tifffile.imread(w).astype(np.float64) if w else None for _, w, _ in inputs]
    ref = traces[0]
    m = max(1, int(p.trace_mul))
    pts = ref.points[::m, ::m].astype(np.float64)
    valid = ref.valid[::m, ::m].copy()
    wref = winds[0][::m, ::m] if winds[0] is not None else None
    step = m / ref.scale[0]
    holes = interior_holes(valid)
    filled = biharmonic_fill(pts, valid, holes)
    others = [SurfaceSearch.from_points(t.points) for t in traces[1:]]
    align = []
    for o, w in zip(others, winds[1:]):
        align.append(_align_winding(pts[valid], wref[valid] if wref is not None else None, o, w, 2.0))
    snapped = np.zeros(valid.shape, bool)
    out_w = np.where(valid, wref, np.nan) if wref is not None else None
    hq = np.argwhere(holes)
    if len(hq):
        q = filled[holes]
        best_d = np.full(len(q), np.inf)
        best_p = q.copy()
        best_w = np.full(len(q), np.nan)
        for k, (o, w) in enumerate(zip(others, winds[1:])):
            if o.tree is None:
                continue
            kk = min(4, len(o.rc))
            _, idx = o.tree.query(q, k=kk)
            idx = np.asarray(idx).reshape(len(q), kk)
            d, cp, loc = closest_on_grid(o.grid, o.valid, np.ascontiguousarray(q), o.rc[idx, 0], o.rc[idx, 1])
            better = d < best_d
            best_d[better], best_p[better] = d[better], cp[better]
            if w is not None:
                s, off, _ = align[k]
                best_w[better] = s * _winding_at(w, loc[better]) + off
        ok = best_d <= max(p.wind_th * step, 2.0) * 3
        filled[holes] = np.where(ok[:, None], best_p, q)
        snapped[tuple(hq[ok].T)] = True
        if out_w is not None:
            wv = out_w[holes]
            wv = np.where(ok & ~np.isnan(best_w), best_w, wv)
            out_w[holes] = wv
    final_valid = valid | holes
    out_pts = np.where(final_valid[..., None], filled, -1.0).astype(np.float32)
    out_dir = Path(out_dir) if out_dir else Path(inputs[0][0]).parent
    name = timestamp_name("fuse_fill_")
    extra = {}
    if out_w is not None:
        wfill = out_w.copy()
        if np.isnan(wfill[final_valid]).any():  # unsnapped inpainted cells: inpaint the winding too
            wfill = biharmonic_fill(np.stack([np.nan_to_num(out_w)] * 3, -1), ~np.isnan(out_w) & final_valid,
                                    np.isnan(out_w) & final_valid)[..., 0]
        buf = __import__("io").BytesIO()
        tifffile.imwrite(buf, np.where(final_valid, wfill, 0).astype(np.float32))
        extra = {"winding_exact.tif": buf.getvalue(), "winding.tif": buf.getvalue()}
    meta = {"source": "vcd_fill_quadmesh", "vc_fill_quadmesh_params": asdict(p),
            "vcd_inputs": [{"trace": str(t), "winding": w, "weight": wt} for t, w, wt in inputs],
            "vcd_winding_alignment": [{"trace": str(inputs[i + 1][0]), "sign": a[0], "offset": a[1], "matches": a[2]}
                                      for i, a in enumerate(align)],
            "vcd_filled_cells": int(holes.sum()), "vcd_snapped_cells": int(snapped.sum())}
    write_surface(out_dir / name, out_pts, meta, scale=[ref.scale[0] / m, ref.scale[1] / m], extra_files=extra)
    return {"written": str(out_dir / name), "filled": int(holes.sum()), "snapped": int(snapped.sum()),
            "alignment": meta["vcd_winding_alignment"]}


def upscale_grounding(infill: str, infill_winding: str | None, factor: int, sources: list[tuple[str, str | None]],
                      out_dir: str | os.PathLike | None = None) -> dict:
    """Upsample ``infill`` ``factor`` times and snap onto the source traces (see module docstring)."""
    s = read_surface(infill)
    f = int(factor)
    if f < 1:
        raise InputError(None, f"FACTOR {factor} must be >= 1", "e.g. 5")
    R, C = s.shape
    rr = np.arange((R - 1) * f + 1) / f
    cc = np.arange((C - 1) * f + 1) / f
    r0 = np.clip(np.floor(rr).astype(int), 0, R - 2)
    c0 = np.clip(np.floor(cc).astype(int), 0, C - 2)
    fr, fc = (rr - r0)[:, None, None], (cc - c0)[None, :, None]
    P = s.points.astype(np.float64)
    v = s.valid
    up = (P[r0][:, c0] * (1 - fr) * (1 - fc) + P[r0][:, c0 + 1] * (1 - fr) * fc +
          P[r0 + 1][:, c0] * fr * (1 - fc) + P[r0 + 1][:, c0 + 1] * fr * fc)
    uv = v[r0][:, c0] & v[r0][:, c0 + 1] & v[r0 + 1][:, c0] & v[r0 + 1][:, c0 + 1]
    step = 1.0 / s.scale[0] / f
    flat = up[uv]
    best_d = np.full(len(flat), np.inf)
    best_p = flat.copy()
    for t, _w in sources:
        o = SurfaceSearch.from_points(read_surface(t).points)
        d, q = o.closest(flat)
        better = d < best_d
        best_d[better], best_p[better] = d[better], q[better]
    ok = best_d <= max(step, 2.0)
    flat = np.where(ok[:, None], best_p, flat)
    out = np.full(up.shape, -1.0, np.float32)
    out[uv] = flat
    out_dir = Path(out_dir) if out_dir else Path(infill).parent
    name = timestamp_name("grounding_hr_")
    write_surface(out_dir / name, out, {"source": "vcd_upscale_grounding",
                                        "vc_tiffxyz_upscale_grounding_scale_factor": f,
                                        "vcd_grounded_fraction": float(ok.mean()) if len(ok) else 0.0},
                  scale=[s.scale[0] * f, s.scale[1] * f])
    return {"written": str(out_dir / name), "grounded_fraction": float(ok.mean()) if len(ok) else 0.0}
