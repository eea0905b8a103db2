"""A trace in progress: its grid of corners (:class:`TraceState`) and the grid's neighbourhoods.

Shared by the tracer's loop (:mod:`vcd.trace.tracer`), bridging (:mod:`vcd.trace.bridge`) and the
upsampling of the result (:mod:`vcd.trace.upsample`). A corner is ``pos[r, c] = (x, y, z)`` in
level-0 voxels; rows are z levels, columns grow along the sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NBR4 = ((1, 0), (-1, 0), (0, 1), (0, -1))
NBR8 = NBR4 + ((1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass
class TraceState:
    pos: np.ndarray                 #: float64 [H, W, 3] corner positions (x, y, z) voxels
    valid: np.ndarray               #: bool [H, W]
    support: np.ndarray             #: float32 [H, W] consensus support of each accepted corner
    disagree: np.ndarray            #: float32 [H, W] share of the neighbours' patches that proposed elsewhere
    rival: np.ndarray               #: float32 [H, W] support of the best competing proposal / the winner's
    gen: np.ndarray                 #: int32 [H, W] generation of acceptance
    offsurf: np.ndarray = None      #: float32 [H, W] distance to the supporters' consensus surface / (2·th)
    supporters: dict = field(default_factory=dict)   #: (r, c) -> tuple of patch indices
    locs: dict = field(default_factory=dict)         #: (r, c) -> {patch: float64 (row, col) in its grid}
    used_approved: set = field(default_factory=set)
    generations: int = 0
    stop_reason: str = ""

    def __post_init__(self):
        if self.offsurf is None:
            self.offsurf = np.zeros(self.valid.shape, np.float32)

    def grow_cols(self, n: int) -> None:
        H = self.pos.shape[0]
        self.pos = np.concatenate([self.pos, np.full((H, n, 3), -1.0)], 1)
        for name in ("valid", "support", "disagree", "rival", "gen", "offsurf"):
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.zeros((H, n), a.dtype)], 1))

    def set_corner(self, r: int, c: int, q, locs: dict) -> None:
        """Corner (r, c) at ``q`` (x, y, z), supported by the patches of ``locs`` {patch: (row, col)}."""
        self.pos[r, c], self.valid[r, c] = q, True
        self.locs[(r, c)] = locs
        self.supporters[(r, c)] = tuple(sorted(int(t) for t in locs))


def fringe_cells(valid: np.ndarray, cmin: int) -> list[tuple[int, int]]:
    """Empty cells with a valid 4-neighbour in columns ≥ ``cmin``, in row-major order."""
    nb = np.zeros_like(valid)
    nb[1:] |= valid[:-1]
    nb[:-1] |= valid[1:]
    nb[:, 1:] |= valid[:, :-1]
    nb[:, :-1] |= valid[:, 1:]
    nb &= ~valid
    nb[:, :cmin] = False
    return [(int(r), int(c)) for r, c in np.argwhere(nb)]
