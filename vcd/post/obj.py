"""OBJ export/import (``vc_tifxyz2obj``): vertices, UVs and normals, two triangles per valid quad.

``vt`` is the grid position divided by the scale (VC3D's default), i.e. ``(col/sx, row/sy)`` in
voxels, so ``from_obj`` recovers the grid exactly: ``col = round(u·sx)``, ``row = round(v·sy)``.
Coordinates are written with 6 decimals (1e-6 voxel).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats.tifxyz import read_surface, write_surface
from ..kernels.points import valid_quads
from .render import grid_normals


def to_obj(segment: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write a surface as a Wavefront OBJ (vertices ``(x, y, z)`` voxels, normals, UVs, two triangles
    per valid quad) to ``out``; returns ``{vertices, faces}`` counts."""
    s = read_surface(segment)
    sx, sy = s.scale
    v = s.valid
    idx = -np.ones(v.shape, np.int64)
    idx[v] = np.arange(1, v.sum() + 1)
    n = grid_normals(s.points, v)
    rc = np.argwhere(v)
    lines = [f"# vcd to-obj {Path(segment).name}  grid {v.shape[0]}x{v.shape[1]}  scale {sx} {sy}\n"]
    lines += [f"v {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in s.points[v]]
    lines += [f"vt {c / sx:.6f} {r / sy:.6f}\n" for r, c in rc]
    lines += [f"vn {q[0]:.6f} {q[1]:.6f} {q[2]:.6f}\n" for q in n[v]]
    q = valid_quads(v)
    faces = 0
    for r, c in np.argwhere(q):
        a, b, d, e = idx[r, c], idx[r, c + 1], idx[r + 1, c], idx[r + 1, c + 1]
        lines.append(f"f {a}/{a}/{a} {d}/{d}/{d} {b}/{b}/{b}\n")
        lines.append(f"f {e}/{e}/{e} {b}/{b}/{b} {d}/{d}/{d}\n")
        faces += 2
    tmp = Path(out).with_name(f".{Path(out).name}.part")
    tmp.write_text("".join(lines))
    os.replace(tmp, out)
    return {"vertices": int(v.sum()), "faces": faces}


def from_obj(obj: str | os.PathLike, out_dir: str | os.PathLike, scale=None) -> dict:
    """Rebuild a tifxyz grid from an OBJ written by :func:`to_obj` (or any OBJ with grid-like UVs)."""
    obj = Path(obj)
    verts, uvs, sc = [], [], None
    for line in obj.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("vt "):
            uvs.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("#") and "scale" in line:
            parts = line.split("scale")[1].split()
            sc = (float(parts[0]), float(parts[1]))
    sc = scale or sc
    if sc is None or len(verts) != len(uvs) or not verts:
        raise FormatError(obj, "OBJ needs one vt per v and a grid scale", "export with `vcd to-obj` or pass --scale")
    verts, uvs = np.array(verts), np.array(uvs)
    cols = np.round(uvs[:, 0] * sc[0]).astype(np.int64)
    rows = np.round(uvs[:, 1] * sc[1]).astype(np.int64)
    cols -= cols.min() if cols.min() < 0 else 0
    rows -= rows.min() if rows.min() < 0 else 0
    grid = np.full((rows.max() + 1, cols.max() + 1, 3), -1.0, np.float32)
    grid[rows, cols] = verts
    write_surface(out_dir, grid, {"scale": list(sc), "source": "vcd_from_obj"})
    return {"rows": int(grid.shape[0]), "cols": int(grid.shape[1]), "vertices": len(verts)}
