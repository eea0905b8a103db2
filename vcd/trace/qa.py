"""Sheet-jump QA: a per-corner suspicion map that points the annotator at the spot to mask.

For every trace corner (trace-cell resolution, row/col as the trace's corner grid):

.. math:: q = \\max\\Big(d,\\; 1 - \\min\\big(1, \\tfrac{s}{s_0}\\big),\\; f\\Big)

- ``d``: share of the patches that carried the neighbouring corners but did *not* agree here
  (they went elsewhere — typical where a patch jumps to the next wrap);
- ``s/s0``: consensus support relative to ``inlier_base_threshold`` (low support is weak evidence);
- ``f``: a normal flip — the angle between this corner's quad normal and its neighbours', /90°.

Written as ``qa.tif`` (float32, 0 = fine … 1 = suspicious, -1 = no corner) and ``qa.png`` (red =
suspicious), with a summary in ``meta.json`` under ``qa``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def suspicion_map(pos, valid, support, disagree, s0: float) -> np.ndarray:
    q = np.full(valid.shape, -1.0, np.float32)
    low = 1.0 - np.minimum(1.0, support / max(s0, 1e-6))
    flip = np.zeros(valid.shape, np.float32)
    H, W = valid.shape
    n = np.zeros(pos.shape)
    ok = np.zeros(valid.shape, bool)
    for r in range(H - 1):
        for c in range(W - 1):
            if valid[r, c] and valid[r + 1, c] and valid[r, c + 1]:
                v = np.cross(pos[r + 1, c] - pos[r, c], pos[r, c + 1] - pos[r, c])
                L = np.linalg.norm(v)
                if L > 0:
                    n[r, c], ok[r, c] = v / L, True
    for r in range(H):
        for c in range(W):
            if not ok[r, c]:
                continue
            worst = 0.0
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < H and 0 <= cc < W and ok[rr, cc]:
                    ang = np.degrees(np.arccos(np.clip(np.dot(n[r, c], n[rr, cc]), -1, 1)))
                    worst = max(worst, ang / 90.0)
            flip[r, c] = min(1.0, worst)
    q[valid] = np.maximum(np.maximum(disagree, low), flip)[valid]
    return q


def write_png(q: np.ndarray, path, scale: int = 4) -> None:
    rgb = np.zeros(q.shape + (3,), np.uint8)
    v = q >= 0
    rgb[v, 0] = (255 * np.clip(q[v], 0, 1)).astype(np.uint8)
    rgb[v, 1] = (255 * (1 - np.clip(q[v], 0, 1))).astype(np.uint8)
    rgb[v, 2] = 40
    img = Image.fromarray(rgb).resize((q.shape[1] * scale, q.shape[0] * scale), Image.NEAREST)
    img.save(path)


def summary(q: np.ndarray, threshold: float = 0.5) -> dict:
    v = q >= 0
    hot = np.argwhere(q >= threshold)
    return {"corners": int(v.sum()), "suspicious": int(len(hot)), "threshold": threshold,
            "max": float(q[v].max()) if v.any() else 0.0, "mean": float(q[v].mean()) if v.any() else 0.0,
            "hotspots_rc": hot[:20].tolist()}
