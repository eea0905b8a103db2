"""The ``realistic`` preset: a prediction like a real scroll's, its knobs drawn from the seed.

``realistic_family(seed)`` draws every knob with ``numpy.random.default_rng(seed)``; ``make_scroll(...,
preset="realistic", seed=N, **overrides)`` replaces single knobs. Knobs (voxels unless stated):

- ``thickness_range`` (min, max): full band thickness, 1-6, varying smoothly along the sheet;
  ``half_thickness``: a fixed half thickness instead (None = vary);
- ``soft``: uint8 probabilities with a linear falloff of ``soft_width`` voxels across the band (170 —
  VC3D's threshold — exactly at the band edge) instead of a binary 0/255 prediction;
- ``dropout``: share (0-0.4) of the volume removed in blobs (smoothed noise, ``blob_sigma``), plus
  ``n_holes`` large elliptical holes in the sheet;
- ``pitch``, ``ellipticity``, ``displacement``, ``phi_e``, ``phi_d``: radial wrap spacing
  ``pitch * (1 + e cos 2(phi - phi_e) + d cos(phi - phi_d))`` (drawn so the spacing spans 4-8 .. 14-25
  voxels around the scroll, the minimum measured along the normal; the crush is reduced, keeping the
  widest spacing, where the thinnest would leave < ~2 voxels between bands of the thickest sheet);
- ``tilt_deg`` (5-15) and ``tilt_azimuth``: axis tilt away from +z; ``twist_deg``: rotation of the
  spiral over the volume's z extent; ``waves``: (amplitude, k per radian, cycles over z, phase);
- ``n_fused``: zones where a wrap is pulled onto its outer neighbour until their gap along the normal is
  about ``fused_gap`` × the local thickness, always < 0.9 × it (one band), over a core of
  ``± extent_arc`` (10-15) voxels along the sheet and ``± extent_s`` (7-11) along the axis, easing back
  over as much again;
- ``fused_family``: True draws the fused zones from a family instead (issue 27), every value from the seed
  on its own stream (the other knobs' draws are unchanged): ``n_fused`` 2-4 zones (unless given), the
  sheet's full thickness ``fused_thickness_range`` (1-5 voxels, fixed per draw unless ``half_thickness``
  or ``thickness_range`` is given), and per zone the background gap left between the two bands along the
  normal ``fused_gap_range`` (0-3 voxels; 0: the bands touch), the core's arc along the sheet
  ``fused_arc_range`` (40-150 voxels) and its height along the axis ``fused_height_range`` (30-100
  voxels), easing back over as much again on each side;
- ``n_fragments``: short false bands between wraps; ``speckle``: share of voxels switched on at random;
- ``clean``: True drops every defect (dropout, holes, fused zones, fragments, speckle) not given
  explicitly, keeps the shape (``clean=True, n_fused=2``: only fused zones).

Example — a ~80×128×128 realistic scroll, then the same draw with 3-voxel sheets and 30 % dropout::

    from vcd.synth import make_scroll, load_truth, realistic_family
    knobs = realistic_family(7)                    # what seed 7 draws (dict of the knobs above)
    vp = make_scroll("r7.volpkg", (80, 128, 128), preset="realistic", seed=7)
    vp2 = make_scroll("r7b.volpkg", (80, 128, 128), preset="realistic", seed=7, half_thickness=1.5, dropout=0.3)
    truth = load_truth(vp)                         # RealisticTruth: nearest(pts) -> (distance, theta),
    truth.features["fused"], truth.feature_points()  # wrap_of(theta), fused zones / holes / fragments

CLI: ``vcd synth out.volpkg --shape 80 128 128 --preset realistic --seed 7 --half-thickness 1.5
--param dropout=0.3``.

Geometry and features never depend on the defect knobs' random draws (separate RNG streams), so
``dropout=0`` renders the same sheet as the drawn dropout. The truth (:class:`RealisticTruth`) answers
exact distances (see :mod:`vcd.synth.warp`) and lists fused zones, holes and fragments in ``features``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import warp as w
from .truth import SheetTruth

KNOBS = ("thickness_range", "half_thickness", "soft", "soft_width", "dropout", "blob_sigma", "n_holes", "pitch",
         "ellipticity", "displacement", "phi_e", "phi_d", "r0", "theta0", "center_offset", "tilt_deg",
         "tilt_azimuth", "twist_deg", "waves", "n_fused", "fused_gap", "n_fragments", "speckle", "clean",
         "fused_family", "fused_gap_range", "fused_arc_range", "fused_height_range", "fused_thickness_range")

#: the fused-zone family's default ranges (voxels): background gap, core arc, core height, sheet thickness
FUSED_FAMILY = dict(fused_gap_range=(0.0, 3.0), fused_arc_range=(40.0, 150.0), fused_height_range=(30.0, 100.0),
                    fused_thickness_range=(1.0, 5.0))


def realistic_family(seed: int) -> dict:
    """Every knob of the realistic preset drawn from ``seed`` (a dict usable as ``**overrides``)."""
    rng = np.random.default_rng(seed)
    tmin = float(rng.uniform(1.0, 3.5))
    tmax = float(rng.uniform(tmin, min(6.0, tmin + 2.5)))
    smin, smax, f_e = float(rng.uniform(4.0, 8.0)), float(rng.uniform(14.0, 25.0)), float(rng.uniform(0.3, 0.7))
    phi_e, phi_d = (float(v) for v in rng.uniform(0, 2 * math.pi, 2))
    pitch, ell, disp = solve_shape(smin, smax, f_e, phi_e, phi_d)
    return dict(
        thickness_range=(tmin, tmax), half_thickness=None, soft=bool(rng.random() < 0.5),
        soft_width=float(rng.uniform(1.0, 2.5)), dropout=float(rng.uniform(0.0, 0.4)),
        blob_sigma=float(rng.uniform(0.8, 1.5)), n_holes=int(rng.integers(1, 5)),
        pitch=pitch, ellipticity=ell, displacement=disp,
        phi_e=phi_e, phi_d=phi_d, r0=float(rng.uniform(6.0, 10.0)), theta0=float(rng.uniform(0, 2 * math.pi)),
        center_offset=tuple(float(v) for v in rng.uniform(-4, 4, 2)), tilt_deg=float(rng.uniform(5.0, 15.0)),
        tilt_azimuth=float(rng.uniform(0, 2 * math.pi)), twist_deg=float(rng.uniform(-30.0, 30.0)),
        waves=[(float(rng.uniform(0.5, 2.0)), float(rng.choice([2.0, 3.0])), float(rng.uniform(0.5, 1.5)),
                float(rng.uniform(0, 2 * math.pi))) for _ in range(w.N_WAVE)],
        n_fused=int(rng.integers(1, 4)), fused_gap=float(rng.uniform(0.3, 0.8)),
        n_fragments=int(rng.integers(2, 7)), speckle=float(rng.uniform(0.0, 3e-4)), clean=False,
        fused_family=False, **FUSED_FAMILY)


def _spacing_profile(e, d, phi_e, phi_d):
    """(radial spacing factor g, normal spacing factor) around the scroll for shape amplitudes ``e``, ``d``."""
    phi = np.linspace(0, 2 * math.pi, 721)
    g = 1.0 + e * np.cos(2 * (phi - phi_e)) + d * np.cos(phi - phi_d)
    dg = -2 * e * np.sin(2 * (phi - phi_e)) - d * np.sin(phi - phi_d)
    return g, g / np.sqrt(1.0 + (dg / np.maximum(g, 1e-6)) ** 2)


def solve_shape(smin: float, smax: float, f_e: float, phi_e: float, phi_d: float):
    """``(pitch, ellipticity, displacement)`` whose radial wrap spacing peaks at ``smax`` voxels and whose
    spacing along the normal bottoms out at ``smin``; ``f_e`` is the elliptical share of the crush."""
    def spacing_min(a):
        g, n = _spacing_profile(a * f_e, a * (1 - f_e), phi_e, phi_d)
        return smax / g.max() * n.min(), g.min()
    lo, hi = 0.0, 1.0
    while hi > 1e-3 and spacing_min(hi)[1] < 0.15:
        hi *= 0.9
    if spacing_min(hi)[0] >= smin:
        lo = hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if spacing_min(mid)[0] >= smin else (lo, mid)
    g, _ = _spacing_profile(lo * f_e, lo * (1 - f_e), phi_e, phi_d)
    return float(smax / g.max()), float(lo * f_e), float(lo * (1 - f_e))


def resolve_knobs(seed: int, overrides: dict) -> dict:
    """The family's draw for ``seed`` with ``overrides`` applied; unknown keys raise ValueError."""
    bad = sorted(set(overrides) - set(KNOBS))
    if bad:
        raise ValueError(f"unknown realistic knob(s) {bad}; use some of {list(KNOBS)}")
    k = {**realistic_family(seed), **overrides}
    if k["clean"]:  # no defects, except those asked for explicitly
        k.update({**dict(dropout=0.0, n_holes=0, n_fused=0, n_fragments=0, speckle=0.0), **overrides})
    if k["fused_family"]:  # its own stream: the other knobs keep their draws
        frng = np.random.default_rng([seed, 27])
        n_f, t_f = int(frng.integers(2, 5)), float(frng.uniform(*k["fused_thickness_range"]))
        if "n_fused" not in overrides:
            k["n_fused"] = n_f
        if "half_thickness" not in overrides and "thickness_range" not in overrides:
            k["half_thickness"] = 0.5 * t_f
    if k["half_thickness"] is not None:
        k["thickness_range"] = (2.0 * k["half_thickness"],) * 2
    tmax = float(k["thickness_range"][1])
    e, d = float(k["ellipticity"]), float(k["displacement"])
    g, n = _spacing_profile(e, d, k["phi_e"], k["phi_d"])
    if g.min() <= 0.05:
        raise ValueError("ellipticity + displacement too large: the spiral would cross itself")
    need = tmax + 2.5  # bands stay >= ~2 voxels apart along the normal outside fused zones
    if k["pitch"] * n.min() < need:
        k["pitch"], k["ellipticity"], k["displacement"] = solve_shape(
            need, max(need, k["pitch"] * g.max()), e / (e + d) if e + d > 0 else 0.5, k["phi_e"], k["phi_d"])
    return k


@dataclass
class RealisticTruth(SheetTruth):
    """Ground truth of a realistic scroll. ``bumps`` are the fused zones ``(theta, s, radial_gap,
    sigma_arc, sigma_s)``; ``holes`` ``(theta, s, arc_radius, s_radius)``; ``fragments`` ``(theta, s,
    arc_radius, s_radius, frac, half_thickness)``; ``s`` is the coordinate along the (tilted) axis,
    ``z`` the world slice. ``params`` holds the resolved knobs (``vec``: the model vector)."""

    model: str = "realistic"
    params: dict = field(default_factory=dict)
    fragments: list = field(default_factory=list)
    fused: list = field(default_factory=list)

    @property
    def P(self) -> np.ndarray:
        return np.asarray(self.params["vec"], dtype=np.float64)

    @property
    def frags_arr(self) -> np.ndarray:
        return self._arr(self.fragments, 6)

    @property
    def axis(self) -> np.ndarray:
        """Unit direction (x, y, z) of the scroll axis."""
        P = self.P
        return np.array([P[w.R02], P[w.R12], P[w.R22]])

    @property
    def features(self) -> dict:
        return {"holes": self.holes, "bridges": [], "touches": [], "fused": self.fused,
                "fragments": self.fragments}

    # ------------------------------------------------------------------ queries (theta, world z)
    def nearest(self, pts):
        d, th, _ = self.nearest_full(pts)
        return d, th

    def nearest_full(self, pts):
        """Exact distance (voxels), theta and axis coordinate ``s`` of the closest sheet point."""
        pts = np.ascontiguousarray(np.asarray(pts, dtype=np.float64).reshape(-1, 3))
        return w.nearest_many(self.P, self.bumps_arr, pts)

    def points(self, theta, z) -> np.ndarray:
        """N×3 sheet points at angles ``theta`` and world slices ``z`` (arrays of equal length)."""
        th, zz = np.broadcast_arrays(np.asarray(theta, dtype=np.float64), np.asarray(z, dtype=np.float64))
        return w.points_at(self.P, self.bumps_arr, np.ascontiguousarray(th.ravel()),
                           np.ascontiguousarray(zz.ravel()))[0]

    def point(self, theta: float, z: float) -> np.ndarray:
        return self.points([theta], [z])[0]

    def s_of(self, theta: float, z: float) -> float:
        return w.s_for_z(self.P, self.bumps_arr, float(theta), float(z))

    def radius(self, theta: float, z: float) -> float:
        """Radius (voxels) from the axis of the sheet point at ``(theta, z)``."""
        return w.radius(self.P, self.bumps_arr, float(theta), self.s_of(theta, z))

    def point_s(self, theta, s) -> np.ndarray:
        """N×3 sheet points at angles ``theta`` and axis coordinates ``s`` (as in ``nearest_full``)."""
        th, ss = np.broadcast_arrays(np.asarray(theta, float), np.asarray(s, float))
        return np.array([w.world_point(self.P, self.bumps_arr, a, b) for a, b in zip(th.ravel(), ss.ravel())])

    def half_thickness_s(self, theta, s) -> np.ndarray:
        """Half thickness (voxels) of the rendered band at sheet coordinates ``(theta, s)``."""
        th, ss = np.broadcast_arrays(np.asarray(theta, float), np.asarray(s, float))
        return w.half_thick_many(self.P, np.ascontiguousarray(th.ravel()), np.ascontiguousarray(ss.ravel()))

    def half_thickness_at(self, theta, z) -> np.ndarray:
        """Half thickness (voxels) of the rendered band at sheet points ``(theta, world z)``."""
        th, zz = np.broadcast_arrays(np.asarray(theta, float), np.asarray(z, float))
        P, B = self.P, self.bumps_arr
        return self.half_thickness_s(th, [w.s_for_z(P, B, a, b) for a, b in zip(th.ravel(), zz.ravel())])

    def feature_points(self) -> dict:
        """World (x, y, z) centres of the planted features: ``fused`` (on the inner wrap), ``holes`` (on the
        sheet) and ``fragments`` (the false band, between two wraps)."""
        P, B = self.P, self.bumps_arr
        frag = []
        for th, s, _a, _z, frac, _h in self.fragments:
            r_in, r_out = w.radius(P, B, th, s), w.radius(P, B, th + 2 * math.pi, s)
            a, b, _ = w.local_point(P, B, th, s)
            f = (r_in + frac * (r_out - r_in)) / r_in
            frag.append(w.to_world(P, a * f, b * f, s))
        return {"fused": np.array([f["center"] for f in self.fused]).reshape(-1, 3),
                "holes": self.point_s([h[0] for h in self.holes], [h[1] for h in self.holes]).reshape(-1, 3),
                "fragments": np.array(frag).reshape(-1, 3)}

    def normals(self, theta, z, h: float = 1e-3) -> np.ndarray:
        """Unit normals (x, y, z) at sheet points ``(theta, z)``, pointing outward (away from the axis)."""
        th, zz = np.broadcast_arrays(np.asarray(theta, float), np.asarray(z, float))
        th, zz = th.ravel(), zz.ravel()
        p = self.points(th, zz)
        du = self.points(th + h / np.maximum(np.linalg.norm(p[:, :2] - self.center, axis=1), 1.0), zz) - p
        dv = self.points(th, zz + h) - p
        n = np.cross(du, dv)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        return n * np.sign(np.einsum("ij,ij->i", n, p - self.points(th - 2 * math.pi, zz)))[:, None]

    def gap_to_next(self, theta, z) -> np.ndarray:
        """Distance (voxels) from sheet points ``(theta, z)`` to the next wrap outward."""
        th, zz = np.broadcast_arrays(np.asarray(theta, float), np.asarray(z, float))
        th = np.ascontiguousarray(th.ravel())
        p = self.points(th, zz.ravel())
        return w.project_many(self.P, self.bumps_arr, p, th + 2 * math.pi)[0]

    def sample_grid(self, theta0, theta1, z0, z1, step):
        zs = np.arange(z0, z1 + 1e-9, step)
        zm = 0.5 * (z0 + z1)
        thetas = [theta0]
        while thetas[-1] < theta1:
            thetas.append(thetas[-1] + step / max(self.radius(thetas[-1], zm), 1.0))
        tt, zz = np.meshgrid(np.array(thetas), zs)
        pts = self.points(tt, zz).reshape(len(zs), len(thetas), 3).astype(np.float32)
        Z, Y, X = self.shape
        out = (pts[..., 0] < 0) | (pts[..., 1] < 0) | (pts[..., 2] <= 0) | (pts[..., 0] > X - 1) | \
              (pts[..., 1] > Y - 1) | (pts[..., 2] > Z - 1)
        pts[out] = -1
        return pts

    def sheet_samples(self, spacing: float = 2.0, margin: float = 2.0):
        Z, Y, X = self.shape
        zs = np.arange(margin, Z - margin, spacing, dtype=np.float64)
        lo = np.array([margin, margin], dtype=np.float64)
        hi = np.array([X - 1 - margin, Y - 1 - margin], dtype=np.float64)
        return w.sample_sheet(self.P, self.bumps_arr, zs, float(spacing), lo, hi)

    def to_json(self) -> dict:
        d = super().to_json()
        d["params"] = _jsonable(d["params"])
        return d


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


def _rotation(tilt_deg: float, azimuth: float) -> np.ndarray:
    """Rotation taking +z to the axis tilted ``tilt_deg`` towards ``azimuth`` (Rodrigues)."""
    t = math.radians(tilt_deg)
    k = np.array([-math.sin(azimuth), math.cos(azimuth), 0.0])
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) * math.cos(t) + math.sin(t) * K + (1 - math.cos(t)) * np.outer(k, k)


def _model_vector(k: dict, shape) -> np.ndarray:
    Z, Y, X = shape
    P = np.zeros(w.N_PARAM)
    P[w.CX], P[w.CY], P[w.CZ] = X / 2.0 + k["center_offset"][0], Y / 2.0 + k["center_offset"][1], Z / 2.0
    P[w.R00:w.R22 + 1] = _rotation(k["tilt_deg"], k["tilt_azimuth"]).ravel()
    P[w.RAD0], P[w.PITCH], P[w.TH0] = k["r0"], k["pitch"], k["theta0"]
    P[w.TAU] = math.radians(k["twist_deg"]) / Z
    P[w.ELL], P[w.PHI_E], P[w.DISP], P[w.PHI_D] = k["ellipticity"], k["phi_e"], k["displacement"], k["phi_d"]
    P[w.ZSIZE] = Z
    tmin, tmax = (float(v) for v in k["thickness_range"])
    P[w.HT_MEAN], P[w.HT_AMP] = (tmin + tmax) / 4.0, (tmax - tmin) / 4.0
    rng = np.random.default_rng([k["_seed"], 10])
    P[w.LAM1], P[w.LAM2], P[w.LAM3], P[w.LAM4] = rng.uniform(40, 90), rng.uniform(40, 90), rng.uniform(30, 70), \
        rng.uniform(60, 140)
    P[w.PH1], P[w.PH2], P[w.PH3] = rng.uniform(0, 2 * math.pi, 3)
    P[w.SOFT_W] = k["soft_width"]
    for i, wave in enumerate(list(k["waves"])[: w.N_WAVE]):
        P[w.WAVE0 + 4 * i: w.WAVE0 + 4 * i + 4] = wave
    # outermost wrap: beyond the volume's corners everywhere (tilt shifts the axis by Z/2 tan(tilt))
    g_min = _spacing_profile(k["ellipticity"], k["displacement"], k["phi_e"], k["phi_d"])[0].min()
    reach = 0.5 * math.hypot(X, Y) + 4.0 + 0.5 * Z * math.tan(math.radians(k["tilt_deg"])) + \
        abs(k["center_offset"][0]) + abs(k["center_offset"][1]) + sum(abs(v[0]) for v in k["waves"])
    P[w.TH1] = P[w.TH0] + 2 * math.pi * (max(reach / g_min - k["r0"], 0.0) / k["pitch"] + 1.0)
    return P


def build_realistic(shape, seed: int = 0, voxelsize: float = 7.91, **overrides) -> RealisticTruth:
    """Draw (or take from ``overrides``) the knobs, build the sheet and place its features."""
    k = resolve_knobs(seed, overrides)
    k["_seed"] = int(seed)
    Z, Y, X = (int(v) for v in shape)
    P = _model_vector(k, (Z, Y, X))
    k["vec"] = P.tolist()
    tmin, tmax = k["thickness_range"]
    t = RealisticTruth(shape=(Z, Y, X), center=(float(P[w.CX]), float(P[w.CY])), drift=(float(P[w.R02] / P[w.R22]),
                       float(P[w.R12] / P[w.R22])), r0=float(k["r0"]), pitch=float(k["pitch"]),
                       theta0=float(P[w.TH0]), theta1=float(P[w.TH1]), waves=[list(v) for v in k["waves"]],
                       half_thickness=float((tmin + tmax) / 4.0), preset="realistic", seed=int(seed),
                       voxelsize=voxelsize, params=k)
    if k["fused_family"]:
        _place_fused_family(t, np.random.default_rng([seed, 28]), k)
    else:
        _place_fused(t, np.random.default_rng([seed, 11]), int(k["n_fused"]), float(k["fused_gap"]))
    t.holes = [(th, s, float(r.uniform(8, 18)), float(r.uniform(6, 14)))
               for r in [np.random.default_rng([seed, 12])] for th, s in _spots(t, r, int(k["n_holes"]))]
    _place_fragments(t, np.random.default_rng([seed, 13]), int(k["n_fragments"]))
    return t


def _spots(t: RealisticTruth, rng, n: int, margin: float = 12.0, tries: int = 1):
    """``n`` random sheet spots ``(theta, s)`` inside the volume (``margin`` voxels from its faces)."""
    Z, Y, X = t.shape
    out = []
    for _ in range(n * tries):
        q = rng.uniform([margin, margin, 0.2 * Z], [X - margin, Y - margin, 0.8 * Z])
        _, th, s = t.nearest_full(q[None])
        out.append((float(th[0]), float(s[0])))
    return out


def _local_gap(t: RealisticTruth, th: float, s: float):
    """(normal gap, radial gap, centre point) between the wrap at ``(th, s)`` and the next one outward."""
    P, B = t.P, t.bumps_arr
    p = np.array(w.world_point(P, B, th, s))[None]
    g = w.project_many(P, B, p, np.array([th + 2 * math.pi]))[0][0]
    rg = w.radius(P, B, th + 2 * math.pi, s) - w.radius(P, B, th, s)
    return float(g), float(rg), p[0]


def _place_fused(t: RealisticTruth, rng, n: int, frac: float):
    P = t.P
    for th, s in _spots(t, rng, n, tries=8):
        if len(t.bumps) >= n or th + 2 * math.pi > t.theta1:
            continue
        g0, rg0, _ = _local_gap(t, th, s)
        if g0 > 16.0 or any(abs(b[1] - s) < 30 and abs(th - b[0]) * w.base_rho(P, th) < 60 for b in t.bumps):
            continue
        sa, ss = float(rng.uniform(20, 30)), float(rng.uniform(14, 22))
        thick = _min_band(P, th, s, sa * w.FUSED_CORE / w.base_rho(P, th), ss * w.FUSED_CORE)
        gap = min(frac * thick / max(g0 / rg0, 1e-6), 0.9 * thick)  # radial; the normal gap is <= it
        t.bumps.append((th, s, gap, sa, ss))
        g, _, c = _local_gap(t, th, s)
        t.fused.append(dict(theta=th, s=s, center=c.tolist(), wrap=int(t.wrap_of(th)), gap=g, thickness=thick,
                            extent_arc=sa * w.FUSED_CORE, extent_s=ss * w.FUSED_CORE))


def _place_fused_family(t: RealisticTruth, rng, k: dict):
    """Fused zones of the family (``fused_family``): per zone a background gap, core arc and core height
    drawn from the knobs' ranges; the wrap is pulled onto its outer neighbour until the background
    between the two bands along the normal is the drawn gap (centre distance = gap + both half
    thicknesses, at the zone's centre)."""
    P, n = t.P, int(k["n_fused"])
    for th, s in _spots(t, rng, n, tries=10):
        gap_vx, arc, height = (float(rng.uniform(*k[r])) for r in ("fused_gap_range", "fused_arc_range",
                                                                      "fused_height_range"))
        if len(t.bumps) >= n or th + 2 * math.pi > t.theta1:
            continue
        g0, rg0, _ = _local_gap(t, th, s)
        if g0 > 20.0 or any(abs(b[1] - s) < 0.6 * (b[4] + height) and
                            abs(th - b[0]) * w.base_rho(P, th) < 0.6 * (b[3] + arc) for b in t.bumps):
            continue
        sa, ss = arc / (2 * w.FUSED_CORE), height / (2 * w.FUSED_CORE)
        centre = gap_vx + w.half_thick(P, th, s) + w.half_thick(P, th + 2 * math.pi, s)
        if centre >= g0:  # already this close
            continue
        t.bumps.append((th, s, centre / max(g0 / rg0, 1e-6), sa, ss))
        g, _, c = _local_gap(t, th, s)
        t.fused.append(dict(theta=th, s=s, center=c.tolist(), wrap=int(t.wrap_of(th)), gap=g, gap_vx=gap_vx,
                            thickness=2 * w.half_thick(P, th, s), extent_arc=arc / 2, extent_s=height / 2))


def _min_band(P, th, s, dth, ds) -> float:
    """Smallest ``min(2 ht_in, ht_in + ht_out)`` over ``theta ± dth``, ``s ± ds`` (the fused core)."""
    best = 1e9
    for a in np.linspace(th - dth, th + dth, 7):
        for b in np.linspace(s - ds, s + ds, 7):
            h_in, h_out = w.half_thick(P, a, b), w.half_thick(P, a + 2 * math.pi, b)
            best = min(best, 2 * h_in, h_in + h_out)
    return float(best)


def _place_fragments(t: RealisticTruth, rng, n: int):
    P = t.P
    for th, s in _spots(t, rng, n, tries=6):
        if len(t.fragments) >= n or th + 2 * math.pi > t.theta1:
            continue
        ht = w.half_thick(P, th, s)
        g0, _, c = _local_gap(t, th, s)
        hf = float(rng.uniform(0.5, 1.0)) * ht
        if g0 < 2 * ht + 2 * hf + 4 or any(abs(f["s"] - s) < 20 and abs(f["theta"] - th) < 0.5 for f in t.fused):
            continue
        t.fragments.append((th, s, float(rng.uniform(5, 12)), float(rng.uniform(3, 8)), float(rng.uniform(0.35, 0.65)),
                            hf))


def render_realistic(t: RealisticTruth, ct: bool = True, block: int = 16):
    """Voxelise ``t`` → (prediction uint8 [z, y, x], CT-like uint8 or None)."""
    k = t.params
    Z, Y, X = t.shape
    P, B, H, F = t.P, t.bumps_arr, t.holes_arr, t.frags_arr
    pred = np.zeros((Z, Y, X), dtype=np.uint8)
    ctv = np.zeros((Z, Y, X), dtype=np.uint8) if ct else None
    noise = np.random.default_rng([t.seed, 16])
    for z0 in range(0, Z, block):
        nz = min(block, Z - z0)
        p, d = w.render_block(P, B, H, F, z0, np.array([nz, Y, X], dtype=np.int64), bool(k["soft"]), ct)
        pred[z0:z0 + nz] = p
        if ct:
            sig = max(1.2, float(P[w.HT_MEAN]))
            v = 30.0 + 180.0 * np.exp(-(np.minimum(d, 50.0) ** 2) / (2 * sig ** 2)) + \
                noise.normal(0, 10, d.shape).astype(np.float32)
            ctv[z0:z0 + nz] = np.clip(v, 0, 255).astype(np.uint8)
    if k["dropout"] > 0:
        pred[dropout_mask(t.shape, t.seed, float(k["dropout"]), float(k["blob_sigma"]))] = 0
    _speckle(pred, np.random.default_rng([t.seed, 15]), float(k["speckle"]), bool(k["soft"]))
    return pred, ctv


def dropout_mask(shape, seed: int, share: float, sigma: float) -> np.ndarray:
    """Boolean [z, y, x] mask covering ``share`` of the volume in blobs (smoothed noise, ``sigma`` voxels)."""
    rng = np.random.default_rng([seed, 14])
    f = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    thr = np.quantile(f.ravel()[:: max(1, f.size // 400000)], 1.0 - share)
    return f > thr


def _speckle(pred, rng, share: float, soft: bool):
    n = int(share * pred.size)
    if n == 0:
        return
    idx = [rng.integers(0, s - 1, n) for s in pred.shape]
    val = rng.integers(170, 256, n).astype(np.uint8) if soft else 255
    for oz in (0, 1):
        pred[idx[0] + oz, idx[1], idx[2]] = np.maximum(pred[idx[0] + oz, idx[1], idx[2]], val)
