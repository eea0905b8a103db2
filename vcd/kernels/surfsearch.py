"""A surface grid prepared for point queries (arrays in, numbers out; no files): distances and closest
points (k-d tree + exact point-to-quad distances) and the exact "within ``tol``" count behind overlap
linking (sparse vertex hash of the quad grid). Used by the linker (``vcd.grow.linking``), the tracer's
patch set (``vcd.trace.patches``) and fusion (``vcd.post.fusion``).

Grids are ``points[row, col, :] = (x, y, z)`` in level-0 voxels; invalid vertices are ``x == -1``,
``z <= 0`` or non-finite. Distances are in voxels. Numba kernels live in :mod:`vcd.kernels.pointsearch`.
"""

from __future__ import annotations

import numpy as np

from .points import valid_mask, valid_quads
from .pointsearch import (build_vertex_hash, closest_on_grid, count_within, dist_to_grid, hash_cell, quad_edges,
                          vertex_reach)

OVERLAP_TOL = 2.0


_UNSET = object()


class SurfaceSearch:
    """A surface prepared for point queries: its grid, validity and (built on first use) a k-d tree
    of valid vertices, its sample points and a vertex hash for exact "within tol" tests."""

    def __init__(self, grid: np.ndarray, valid: np.ndarray, tree=_UNSET, rc: np.ndarray | None = None):
        self.grid = grid
        self.valid = valid
        self.rc = np.argwhere(valid) if rc is None else rc
        self._tree = tree
        self._samples = None
        self._hash = None

    @classmethod
    def from_points(cls, pts: np.ndarray) -> "SurfaceSearch":
        """A search over a grid ``[rows, cols, 3]`` of ``(x, y, z)`` voxels (invalid: -1, or not
        finite)."""
        pts = np.ascontiguousarray(pts, dtype=np.float64)
        valid = valid_mask(pts) & np.isfinite(pts).all(axis=-1)  # inf is nowhere
        return cls(pts, valid)

    @property
    def tree(self):
        """A ``scipy.spatial.cKDTree`` of the valid vertices (None if there are none)."""
        if self._tree is _UNSET:
            from scipy.spatial import cKDTree  # imported here: linking never needs it (1 s of import)
            self._tree = cKDTree(self.grid[self.valid]) if len(self.rc) else None
        return self._tree

    def distance(self, queries: np.ndarray, k: int = 4) -> np.ndarray:
        """Distance (voxels) from each (x, y, z) query (N×3) to this surface."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float64).reshape(-1, 3))
        if self.tree is None or len(queries) == 0:
            return np.full(len(queries), np.inf)
        k = min(k, len(self.rc))
        _, idx = self.tree.query(queries, k=k)
        idx = np.asarray(idx).reshape(len(queries), k)
        return dist_to_grid(self.grid, self.valid, queries, self.rc[idx, 0], self.rc[idx, 1])

    def closest(self, queries: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(distance, closest surface point (N×3)) for each (x, y, z) query (N×3)."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float64).reshape(-1, 3))
        if self.tree is None or len(queries) == 0:
            return np.full(len(queries), np.inf), np.full((len(queries), 3), -1.0)
        k = min(k, len(self.rc))
        _, idx = self.tree.query(queries, k=k)
        idx = np.asarray(idx).reshape(len(queries), k)
        d, pts, _ = closest_on_grid(self.grid, self.valid, queries, self.rc[idx, 0], self.rc[idx, 1])
        return d, pts

    def sample_points(self) -> np.ndarray:
        """Valid vertices plus centres of valid quads (N×3; computed once)."""
        if self._samples is None:
            g, v = self.grid, self.valid
            q = valid_quads(v)
            centres = 0.25 * (g[:-1, :-1][q] + g[1:, :-1][q] + g[:-1, 1:][q] + g[1:, 1:][q])
            self._samples = np.ascontiguousarray(np.concatenate([g[v], centres]))
        return self._samples

    def prepare(self) -> "SurfaceSearch":
        """Build the sample points and the vertex hash now (they are otherwise built on first use)."""
        self.sample_points()
        if self._hash is None:
            edges = quad_edges(self.grid, self.valid)
            long_quads, max_edge = _long_quads(edges)
            cell = float(hash_cell(self.grid, self.valid, max(max_edge + OVERLAP_TOL, 1.0)))
            vreach = vertex_reach(edges, *self.valid.shape)
            self._hash = (vreach, long_quads, *build_vertex_hash(self.grid, self.valid, cell), cell, max_edge)
        return self

    def count_within(self, queries: np.ndarray, tol: float = OVERLAP_TOL, min_hits: int = 1 << 62) -> int:
        """How many (x, y, z) queries (N×3) lie within ``tol`` voxels of this surface, counting up
        to ``min_hits`` (exact, no candidate limit: every quad within reach is tested)."""
        vreach, long_quads, lo, dims, keys, starts, order, cell, max_edge = self._hash or self.prepare()._hash
        q = np.ascontiguousarray(queries, dtype=np.float64).reshape(-1, 3)
        return int(count_within(q, self.grid, self.valid, vreach, long_quads, lo, dims, cell, keys, starts, order,
                                max_edge, float(tol), int(min_hits)))


def _long_quads(edges: np.ndarray, factor: float = 8.0) -> tuple[np.ndarray, float]:
    """Split off the few quads whose longest edge (voxels) exceeds ``factor`` × the median — an
    outlier point's quads — so that they do not widen every hash search: returns their first
    corners (K×2 int64) and the longest edge of the others. Not split when they are many."""
    e = edges[edges > 0]
    if len(e) == 0:
        return np.zeros((0, 2), np.int64), 0.0
    long = edges > factor * float(np.median(e))
    if not long.any() or long.sum() > max(16, len(e) // 16):
        return np.zeros((0, 2), np.int64), float(e.max())
    return np.argwhere(long).astype(np.int64), float(edges[~long].max())


def surfaces_overlap(a: SurfaceSearch, b: SurfaceSearch, tol: float = OVERLAP_TOL, min_hits: int = 3) -> bool:
    """The overlap rule between two surfaces (linking, fusion, the tracer).

    Parameters
    ----------
    a, b : SurfaceSearch
        The two surfaces, prepared for point queries.
    tol : float
        Voxels within which a sample point counts as on the other surface (:data:`OVERLAP_TOL`).
    min_hits : int
        Sample points needed.

    Returns
    -------
    bool
        True if at least ``min_hits`` sample points of ``a`` lie within ``tol`` of ``b``, or vice versa.
    """
    for s, t in ((a, b), (b, a)):
        pts = s.sample_points()
        if len(pts) >= min_hits and len(t.rc) and t.count_within(pts, tol, min_hits) >= min_hits:
            return True
    return False
