"""Ground truth of a synthetic scroll: the sheet model, its planted features, and queries on it.

Stored as ``<volpkg>/synth_truth.json`` (VC3D ignores unknown files at the volpkg root).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..formats.jsonio import atomic_write_json
from . import model as m

TRUTH_FILE = "synth_truth.json"


@dataclass
class SheetTruth:
    """A rolled sheet in a ``shape`` = (z, y, x) voxel volume.

    ``waves``: list of (amplitude vx, k per radian, cycles over z, phase); ``bumps``: (theta, z, amplitude
    vx, sigma along the sheet vx, sigma in z vx); ``holes``/``bridges``: (theta, z, arc vx, z extent vx).
    """

    shape: tuple[int, int, int]
    center: tuple[float, float]
    drift: tuple[float, float]
    r0: float
    pitch: float
    theta0: float
    theta1: float
    waves: list = field(default_factory=list)
    bumps: list = field(default_factory=list)
    holes: list = field(default_factory=list)
    bridges: list = field(default_factory=list)
    half_thickness: float = 1.0
    preset: str = "custom"
    seed: int = 0
    voxelsize: float = 7.91
    overrides: dict = field(default_factory=dict)  #: make_scroll keyword overrides of the preset

    # --------------------------------------------------------------------------- numba views
    @property
    def P(self) -> np.ndarray:
        z, _, _ = self.shape
        fixed = [self.center[0], self.center[1], self.drift[0], self.drift[1], z / 2.0, self.r0,
                 self.pitch, self.theta0, self.theta1, float(z)]
        waves = list(self.waves)[: m.N_WAVE] + [(0.0, 0.0, 0.0, 0.0)] * (m.N_WAVE - len(self.waves))
        return np.array(fixed + [v for w in waves for v in w], dtype=np.float64)

    def _arr(self, rows, n) -> np.ndarray:
        return np.array(rows, dtype=np.float64).reshape(-1, n)

    @property
    def bumps_arr(self) -> np.ndarray:
        return self._arr(self.bumps, 5)

    @property
    def holes_arr(self) -> np.ndarray:
        return self._arr(self.holes, 4)

    @property
    def bridges_arr(self) -> np.ndarray:
        return self._arr(self.bridges, 4)

    # --------------------------------------------------------------------------- queries
    @property
    def n_wraps(self) -> float:
        return (self.theta1 - self.theta0) / (2 * math.pi)

    @property
    def features(self) -> dict:
        return {"holes": self.holes, "bridges": self.bridges, "touches": self.bumps}

    def wrap_of(self, theta) -> np.ndarray:
        """Wrap index ``floor((theta - theta0) / 2pi)``."""
        return np.floor((np.asarray(theta) - self.theta0) / (2 * math.pi)).astype(np.int64)

    def nearest(self, pts) -> tuple[np.ndarray, np.ndarray]:
        """Distance (voxels) from each ``(x, y, z)`` point (N×3) to the true sheet, and its unwrapped angle."""
        pts = np.ascontiguousarray(np.asarray(pts, dtype=np.float64).reshape(-1, 3))
        return m.nearest_many(self.P, self.bumps_arr, pts)

    def wrap_at(self, pts) -> np.ndarray:
        """Wrap index of the sheet point nearest to each ``(x, y, z)`` point (N×3)."""
        return self.wrap_of(self.nearest(pts)[1])

    def radius(self, theta: float, z: float) -> float:
        return m.radius(self.P, self.bumps_arr, float(theta), float(z))

    def point(self, theta: float, z: float) -> np.ndarray:
        """(x, y, z) of the sheet at ``(theta, z)``."""
        return np.array(m.sheet_point(self.P, self.bumps_arr, float(theta), float(z)))

    def normals(self, theta, z, h: float = 1e-3) -> np.ndarray:
        """Unit normals (x, y, z) at sheet points ``(theta, z)`` (arrays), pointing away from the axis."""
        th, zz = np.broadcast_arrays(np.asarray(theta, float), np.asarray(z, float))
        out = []
        for t, q in zip(th.ravel(), zz.ravel()):
            p = self.point(t, q)
            du = self.point(t + h / max(self.radius(t, q), 1.0), q) - p
            n = np.cross(du, self.point(t, q + h) - p)
            n /= np.linalg.norm(n)
            out.append(n if n @ (p - self.point(t - 2 * math.pi, q)) > 0 else -n)
        return np.array(out).reshape(-1, 3)

    def sample_grid(self, theta0: float, theta1: float, z0: float, z1: float, step: float) -> np.ndarray:
        """float32 ``[rows, cols, 3]`` grid of sheet points: rows along z (``step`` apart), columns
        along the sheet with increasing theta, ≈ ``step`` voxels of arc apart (measured at the middle
        row). Parts outside the volume are set to -1 (invalid)."""
        zs = np.arange(z0, z1 + 1e-9, step)
        zm = 0.5 * (z0 + z1)
        thetas = [theta0]
        while thetas[-1] < theta1:
            thetas.append(thetas[-1] + step / max(self.radius(thetas[-1], zm), 1.0))
        pts = np.empty((len(zs), len(thetas), 3), dtype=np.float32)
        P, B = self.P, self.bumps_arr
        for i, z in enumerate(zs):
            for j, th in enumerate(thetas):
                pts[i, j] = m.sheet_point(P, B, th, float(z))
        Z, Y, X = self.shape
        out = (pts[..., 0] < 0) | (pts[..., 1] < 0) | (pts[..., 2] <= 0) | (pts[..., 0] > X - 1) | \
              (pts[..., 1] > Y - 1) | (pts[..., 2] > Z - 1)
        pts[out] = -1
        return pts

    def sheet_samples(self, spacing: float = 2.0, margin: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """Points on the true sheet inside the volume, ≈ ``spacing`` voxels apart, and their theta."""
        Z, Y, X = self.shape
        zs = np.arange(margin, Z - margin, spacing)
        pts, ths = [], []
        for z in zs:
            th = self.theta0
            while th <= self.theta1:
                p = self.point(th, z)
                if margin <= p[0] <= X - 1 - margin and margin <= p[1] <= Y - 1 - margin:
                    pts.append(p)
                    ths.append(th)
                th += spacing / max(self.radius(th, z), 1.0)
        return np.array(pts), np.array(ths)

    # --------------------------------------------------------------------------- persistence
    def to_json(self) -> dict:
        d = asdict(self)
        if not d.get("overrides"):
            d.pop("overrides", None)
        d["format"] = "vcd_synth_truth"
        d["version"] = 1
        return d

    def save(self, volpkg: str | os.PathLike) -> Path:
        path = Path(volpkg) / TRUTH_FILE
        atomic_write_json(path, self.to_json())
        return path
