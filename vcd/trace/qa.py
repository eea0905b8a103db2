"""Sheet-jump QA: a per-corner suspicion map that points the annotator at the spot to mask.

For every trace corner (trace-cell resolution, row/col as the trace's corner grid):

.. math:: q = \\max\\Big(d,\\; \\rho,\\; f,\\; o,\\; 0.45\\,\\big(1 - \\min(1, \\tfrac{s}{s_0})\\big)\\Big)

- ``d``: share of the patches that carried the neighbouring corners and proposed a point here but
  did *not* agree with the accepted one (they went elsewhere — typical where a patch jumps to the
  next wrap);
- ``ρ``: support of the best competing proposal (more than ``2·same_surface_th`` voxels away) over
  the winner's support — two patch groups disagree about where the sheet is;
- ``o``: off the supporting patches' consensus surface — the median distance of the corner to its
  supporters' surfaces (at their own (row, col) there) over ``2·same_surface_th``; 1 = the corner
  left the sheet its patches describe (e.g. pulled off by the windowed optimisation near the core);
- ``f``: a normal flip — the angle between this corner's quad normal and its neighbours', /90°;
- ``s/s0``: consensus support relative to ``inlier_base_threshold``. Low support alone is weak
  evidence (patch edges, holes), so it is scaled to stay below the 0.5 "suspicious" line.

Written as ``qa.tif`` (float32, 0 = fine … 1 = suspicious, -1 = no corner) and ``qa.png`` (red =
suspicious; enlarged to a readable size with axes in trace cells, a colour bar and a title), with a
summary in ``meta.json`` under ``qa``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..figure import Axis, ColorBar, compose, png_bytes, save_png, upscale


def suspicion_map(pos, valid, support, disagree, rival, s0: float, offsurf=None) -> np.ndarray:
    """Per-corner suspicion in [0, 1] (-1 = no corner), arrays [rows, cols] of the trace's corner grid."""
    q = np.full(valid.shape, -1.0, np.float32)
    low = 0.45 * (1.0 - np.minimum(1.0, support / max(s0, 1e-6)))
    flip = normal_flip(pos, valid)
    off = np.zeros(valid.shape, np.float32) if offsurf is None else offsurf
    q[valid] = np.maximum.reduce([disagree, rival, low, flip, off])[valid]
    return q


def _tangents(pos, valid, axis):
    """Central (or one-sided) differences of ``pos`` along ``axis`` (0 = rows, 1 = columns), and
    where they are defined."""
    fwd = np.zeros(valid.shape, bool)
    bwd = np.zeros(valid.shape, bool)
    t_f = np.zeros(pos.shape)
    t_b = np.zeros(pos.shape)
    if axis == 0:
        fwd[:-1], t_f[:-1] = valid[1:] & valid[:-1], pos[1:] - pos[:-1]
        bwd[1:], t_b[1:] = valid[:-1] & valid[1:], pos[1:] - pos[:-1]
    else:
        fwd[:, :-1], t_f[:, :-1] = valid[:, 1:] & valid[:, :-1], pos[:, 1:] - pos[:, :-1]
        bwd[:, 1:], t_b[:, 1:] = valid[:, :-1] & valid[:, 1:], pos[:, 1:] - pos[:, :-1]
    t = np.where(fwd[..., None], t_f, 0.0) + np.where(bwd[..., None], t_b, 0.0)
    return t, valid & (fwd | bwd)


def corner_normals(pos, valid) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals [H, W, 3] of the corners from central differences along rows and columns, and
    where they are defined (bool [H, W])."""
    tr, okr = _tangents(pos, valid, 0)
    tc, okc = _tangents(pos, valid, 1)
    n = np.cross(tr, tc)
    L = np.linalg.norm(n, axis=-1)
    ok = okr & okc & (L > 0)
    n[ok] /= L[ok][:, None]
    n[~ok] = 0.0
    return n, ok


def normal_flip(pos, valid) -> np.ndarray:
    """Angle (/90°, clipped to 1) between each corner's normal and the mean normal of its 4-neighbours.

    Normals come from central differences (:func:`corner_normals`), so an unevenly spaced grid does
    not read as a fold; a smooth scroll turns by ``S / radius`` per cell (≈ 0.3 at S = 10 vx,
    r = 20 vx), a fold or a jump to the next wrap by far more."""
    H, W = valid.shape
    n, ok = corner_normals(pos, valid)
    flip = np.zeros(valid.shape, np.float32)
    for r, c in np.argwhere(ok):
        m = sum((n[r + dr, c + dc] for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                 if 0 <= r + dr < H and 0 <= c + dc < W and ok[r + dr, c + dc]), np.zeros(3))
        L = np.linalg.norm(m)
        if L > 0:
            ang = np.degrees(np.arccos(np.clip(np.dot(n[r, c], m / L), -1, 1)))
            flip[r, c] = min(1.0, ang / 90.0)
    return flip


def qa_colors(q: np.ndarray) -> np.ndarray:
    """RGB uint8 of suspicion values: green (0, fine) → red (1, sheet jump likely); black where
    there is no corner (q < 0)."""
    q = np.asarray(q, np.float64)
    rgb = np.zeros(q.shape + (3,), np.uint8)
    v = q >= 0
    rgb[v, 0] = (255 * np.clip(q[v], 0, 1)).astype(np.uint8)
    rgb[v, 1] = (255 * (1 - np.clip(q[v], 0, 1))).astype(np.uint8)
    rgb[v, 2] = 40
    return rgb


def write_png(q: np.ndarray, path, threshold: float = 0.5) -> dict:
    """Write :func:`figure` (titled with the directory ``path`` is in) to ``path`` atomically.
    Returns the figure layout (also stored in the PNG's ``vcd`` text chunk)."""
    path = Path(path)
    fig, layout = figure(q, path.parent.name, threshold)
    save_png(fig, path, layout)
    return layout


def png(q: np.ndarray, trace_name: str, threshold: float = 0.5) -> bytes:
    """:func:`figure` as PNG bytes, for writing inside a staged surface directory."""
    return png_bytes(*figure(q, trace_name, threshold))


def figure(q: np.ndarray, trace_name: str, threshold: float = 0.5):
    """``qa.png``'s image and layout: the suspicion map enlarged (nearest neighbour) to at least
    :data:`vcd.figure.MIN_WIDTH` pixels wide, axes in trace cells (row, column of the corner grid),
    a colour bar and a title naming the trace."""
    big, k = upscale(qa_colors(q))
    s = summary(q, threshold)
    fig, layout = compose(
        Image.fromarray(big, "RGB"), f"QA of {trace_name}: where a sheet jump is likely",
        x=Axis("column (trace cells)", -0.5, q.shape[1] - 0.5), y=Axis("row (trace cells)", -0.5, q.shape[0] - 0.5),
        colorbars=[ColorBar(qa_colors, 0.0, 1.0, f"suspicion (0 = fine, >= {threshold:g} suspicious: mask there; "
                                                 "black = no corner)")],
        subtitle=f"{s['suspicious']} of {s['corners']} corners suspicious (>= {threshold:g}), max {s['max']:.2f}")
    layout.update(kind="qa", pixels_per_cell=k, shape=list(q.shape))
    return fig, layout


def summary(q: np.ndarray, threshold: float = 0.5) -> dict:
    """A QA map's summary for ``meta.json``: corners, suspicious ones (``>= threshold``), max, mean and
    the first 20 hot spots ``[row, col]``."""
    v = q >= 0
    hot = np.argwhere(q >= threshold)
    return {"corners": int(v.sum()), "suspicious": int(len(hot)), "threshold": threshold,
            "max": float(q[v].max()) if v.any() else 0.0, "mean": float(q[v].mean()) if v.any() else 0.0,
            "hotspots_rc": hot[:20].tolist()}
