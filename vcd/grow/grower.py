"""Grow one patch: a quad grid, generation by generation, from a seed point on the predicted surface.

Generation ``g`` tries every *fringe* cell (empty, with an on-surface 4-neighbour): the corner is
initialised by extrapolating its neighbours, refined by a small LM problem
(:mod:`vcd.kernels.grow`), and kept only if it and its edges stay within ``accept_dist`` voxels of
the prediction, it stays inside the volume, it does not fold onto the patch, and its band of
prediction is clear of other sheets by ``sheet_gap`` voxels and no thicker than the locally measured
band (a fused zone) — :mod:`vcd.kernels.sheetband`; the corner is then centred in its band. Every
refused attempt is counted by reason (``GrowResult.refusals``). After each
generation the corners of the last few generations are re-solved (a windowed re-optimisation whose
cost is proportional to the fringe). Growth ends after ``generations`` or when the fringe is empty.

Grid units: the grid step is ``step_size`` voxels; points are ``(x, y, z)`` voxels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..kernels import grow as K
from ..kernels import sheetband as SB
from ..kernels.field import dist_many
from .distance import DistanceField

#: voxels beyond a corner that its band tests read (reach of the clearance test for bands up to ~6
#: voxels thick, and the disc): the field is loaded that far around the growth front, so that no test
#: reads an unloaded chunk — what a run sees never depends on what an earlier run loaded (issue 27, item 4)
BAND_READ = 14.0
#: the same for the merged-band context test (the neighbouring wraps' bands, :mod:`vcd.kernels.sheetband`)
CONTEXT_READ = SB.NEIGHBOUR_REACH + 12.0

#: residual weights (spacing, straightness, surface, edge-surface)
WEIGHTS = np.array([1.0, 0.35, 1.0, 0.5])


@dataclass
class GrowResult:
    points: np.ndarray       #: float32 [rows, cols, 3] (x, y, z) voxels, -1 invalid, cropped (+2 border)
    generations: np.ndarray  #: uint16 [rows, cols], generation each corner was added (0 = none/seed)
    n_corners: int
    max_gen: int
    area_vx2: float          #: on-surface quads × step² (VC3D's definition)
    reason: str              #: why growth stopped
    refusals: dict = None    #: fringe attempts refused, by reason (off_surface, near_sheet, ...)
    attempts: int = 0        #: fringe corner attempts in all
    seed: np.ndarray = None  #: the seed after snapping onto the predicted surface, (x, y, z) voxels
    detail: dict = None      #: attempts by detailed outcome (accepted, edge_hole, bridge_too_long, ...)
    outcome: np.ndarray = None  #: int8 [rows, cols] each cell's last outcome code (kernels.grow), cropped
    bridged: np.ndarray = None  #: bool [rows, cols] corners placed across a hole of the prediction
    thickness: np.ndarray = None  #: float32 [rows, cols] reference band thickness at each corner (voxels)
    audit: dict = None       #: the wrap-change audit's counts (:func:`_audited_component`)
    fused_seed: np.ndarray = None  #: the snapped seed when it sat on a fused band (growth started beside it at ``seed``)


#: the kernel's outcome codes, in code order: (detail name, user-facing reason)
OUTCOMES = (("accepted", "accepted"), ("off_surface", "off_surface"), ("near_sheet", "near_sheet"),
            ("fused_band", "fused_band"), ("fold", "fold"), ("bounds", "bounds"), ("not_converged", "not_converged"),
            ("bridge_too_long", "off_surface"), ("bridge_beside_sheet", "near_sheet"),
            ("edge_switches_band", "near_sheet"), ("edge_hole", "off_surface"), ("oblique_sheet", "near_sheet"),
            ("stretched", "not_converged"), ("no_normal", "not_converged"))
REASONS = ("off_surface", "near_sheet", "fused_band", "fold", "bounds", "not_converged")


#: what a user can do when most refusals have one reason
FIXES = {
    "off_surface": "the prediction ends or has holes here: for soft predictions lower `threshold`, or raise "
                   "`accept_dist`",
    "near_sheet": "wraps touch here: the patch grows around; lower `sheet_gap` only if jumps are acceptable",
    "fused_band": "two wraps fuse into one band here: the patch grows around; seed on the other side",
    "fold": "the grid folds onto itself: lower `step_size`",
    "bounds": "the patch reached the volume's edge",
    "not_converged": "the sheet turns faster than the grid can follow: lower `step_size`",
}


def grow_stats(result: "GrowResult") -> dict:
    """``vcd_grow_stats`` of a run: stop reason, attempts, refusals by reason (counts and shares,
    largest first), the top reason and its fix."""
    refused = {k: v for k, v in sorted((result.refusals or {}).items(), key=lambda kv: -kv[1]) if v}
    n = max(sum(refused.values()), 1)
    top = next(iter(refused), None)
    return {"stop_reason": result.reason, "generations": result.max_gen, "corners": result.n_corners,
            "attempts": result.attempts, "refused": refused, "detail": result.detail or {},
            "refused_share": {k: round(v / n, 3) for k, v in refused.items()},
            "top_refusal": top, "fix": FIXES.get(top, ""), "audit": result.audit or {}}


def format_stats(stats: dict) -> str:
    """One line for stderr: why growth stopped and the share of refused fringe corners by reason."""
    shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in stats["refused_share"].items()) or "none"
    return (f"stopped: {stats['stop_reason']} after {stats['generations']} generations, {stats['corners']} "
            f"corners; refused fringe corners: {shares}")


#: a corner whose offset along its normal from its 4-neighbours' mean differs from its 8-neighbours'
#: (median) by more than this many voxels, or this share of its band's thickness if more, has left
#: its band for another (a single corner stepped onto the next wrap through dropout): cut
OFFSET_JUMP, OFFSET_JUMP_SHARE = 2.0, 0.75


def _offset_jumps(pos: np.ndarray, on: np.ndarray, tref: np.ndarray) -> np.ndarray:
    """[rows, cols] bool: corners whose band offset jumps against their neighbours' (see
    :data:`OFFSET_JUMP`): the corner's offset along the grid normal from its 4-neighbours' mean,
    compared with the median of the same offset at its 8-neighbours, so the sheet's curvature (smooth
    over the grid) cancels. Corners without all 4 neighbours are never marked."""
    R, C = on.shape
    off = np.full((R, C), np.nan)
    full = np.zeros((R, C), bool)
    full[1:-1, 1:-1] = on[1:-1, 1:-1] & on[:-2, 1:-1] & on[2:, 1:-1] & on[1:-1, :-2] & on[1:-1, 2:]
    if not full.any():
        return full
    P = pos
    lap = P[1:-1, 1:-1] - 0.25 * (P[:-2, 1:-1] + P[2:, 1:-1] + P[1:-1, :-2] + P[1:-1, 2:])
    nrm = np.cross(P[2:, 1:-1] - P[:-2, 1:-1], P[1:-1, 2:] - P[1:-1, :-2])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-9)
    off[1:-1, 1:-1] = np.where(full[1:-1, 1:-1], np.einsum("ijk,ijk->ij", lap, nrm), np.nan)
    pad = np.pad(off, 1, constant_values=np.nan)
    nbrs = np.stack([pad[1 + dr:R + 1 + dr, 1 + dc:C + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                     if dr or dc])
    enough = np.sum(~np.isnan(nbrs), axis=0) >= 3
    ref = np.zeros((R, C))
    if enough.any():
        ref[enough] = np.nanmedian(nbrs[:, enough], axis=0)
    lim = np.maximum(OFFSET_JUMP, OFFSET_JUMP_SHARE * tref)
    with np.errstate(invalid="ignore"):
        return full & enough & (np.abs(off - ref) > lim)


def _audited_component(pos, state, tref, bridge, step, field, seed_rc, accept) -> tuple[np.ndarray, dict]:
    """Corners joined to the seed corner by edges that stay on one band (:func:`K.audit_edges`) and
    through no band of two merged wraps (:func:`K.audit_merged`) and no corner whose band offset jumps
    (:func:`_offset_jumps`) — where a patch could change wrap —, [rows, cols] bool, and the audit's
    counts (``band_change_edges``, ``merged_corners``, ``offset_jump_corners``, ``cut_corners``: corners
    cut off from the seed's piece)."""
    bad_r = np.zeros(state.shape, bool)
    bad_c = np.zeros(state.shape, bool)
    n_edges = K.audit_edges(pos, state, tref, bridge, step, field.pool, field.slots, field.shape, bad_r, bad_c)
    merged = np.zeros(state.shape, bool)
    field.ensure_around(pos[state == K.ON_SURFACE], CONTEXT_READ)
    n_merged = K.audit_merged(pos, state, accept, field.pool, field.slots, field.shape, merged)
    on = state == K.ON_SURFACE
    jumped = _offset_jumps(pos, on, tref)
    keep = on & ~merged & ~jumped
    R, C = on.shape
    idx = np.arange(R * C).reshape(R, C)
    ok_r = keep[:-1] & keep[1:] & ~bad_r[:-1]
    ok_c = keep[:, :-1] & keep[:, 1:] & ~bad_c[:, :-1]
    a = np.concatenate([idx[:-1][ok_r], idx[:, :-1][ok_c]])
    b = np.concatenate([idx[1:][ok_r], idx[:, 1:][ok_c]])
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(R * C, R * C))
    _, labels = connected_components(g, directed=False)
    labels = labels.reshape(R, C)
    r, c = seed_rc  # the seed quad's corners: the first still kept names the seed's piece
    quad = [(r + dr, c + dc) for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)) if keep[r + dr, c + dc]]
    piece = keep & (labels == labels[quad[0]]) if quad else np.zeros_like(keep)
    return piece, {"band_change_edges": int(n_edges), "merged_corners": int(n_merged),
                   "offset_jump_corners": int(jumped.sum()),
                   "cut_corners": int(on.sum() - piece.sum())}


def _empty(reason: str) -> GrowResult:
    """A result with no corners and the reason."""
    return GrowResult(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.uint16), 0, 0, 0.0, reason, {}, 0)


def project_to_surface(field: DistanceField, p: np.ndarray, iters: int = 40) -> np.ndarray:
    """Gradient-descend the distance field from ``p`` (x, y, z) until within 0.5 voxel of the surface."""
    p = np.asarray(p, dtype=np.float64).copy()
    field.ensure_around(p[None], 40)
    for _ in range(iters):
        d, gx, gy, gz = K.dist_grad(field.pool, field.slots, field.shape, p[0], p[1], p[2])
        if d <= 0.5:
            break
        g = np.array([gx, gy, gz])
        n = np.linalg.norm(g)
        if n < 1e-6:
            break
        p -= g / n * min(d, 2.0)
    return p


def local_frame(field: DistanceField, p: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tangents and the normal of the predicted surface near ``p`` (x, y, z voxels): PCA of the
    on-surface voxels within ``radius`` voxels that are connected to the one nearest ``p`` — so that
    where wraps lie a few voxels apart the neighbouring wraps do not tilt the frame."""
    r = int(math.ceil(radius))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    offs = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)  # offs[i, j, k] = (x, y, z) offset
    pts = np.round(p) + offs.reshape(-1, 3)
    d = dist_many(field.pool, field.slots, field.shape, pts).reshape(offs.shape[:3])
    on = (d <= 0.5) & (np.linalg.norm(offs, axis=-1) <= radius)
    labels, n = ndimage.label(on)
    if n == 0:
        raise ValueError("too few surface voxels around the seed")
    on_idx = np.argwhere(on)
    nearest = on_idx[np.argmin(np.linalg.norm(on_idx - r, axis=1))]
    comp = pts.reshape(offs.shape)[labels == labels[tuple(nearest)]]
    if len(comp) < 6:
        raise ValueError("too few surface voxels around the seed")
    w, v = np.linalg.eigh(np.cov((comp - comp.mean(0)).T))
    return v[:, 2], v[:, 1], v[:, 0]


def _seed_quad(field: DistanceField, p0: np.ndarray, frame, a0: float, step: float, accept: float, gap: float):
    """Four corners of a ``step``-voxel square around ``p0`` on the surface, each centred in its band:
    ``[(point, band thickness), ...]`` in (row, col) order (0,0), (0,1), (1,0), (1,1), or None.

    The square's in-plane rotation starts at ``a0`` (radians; random seeds are then independent of
    axis alignment) and turns by 45° until all four corners and their edges fit (dropout holes) and
    each corner's band is clear of other sheets by ``gap`` voxels (:func:`band_test`). Returns
    ``"merged"`` when a corner's band is two wraps merged into one (a fused zone whose bands touch:
    :func:`~vcd.kernels.sheetband.merged_by_context`) — which wrap the patch is on cannot be told there."""
    t1, t2, n = frame
    shape = field.shape
    J, res, band = np.empty((64, 3)), np.empty(64), np.empty(4)
    for k in range(8):
        a = a0 + k * math.pi / 4
        u = math.cos(a) * t1 + math.sin(a) * t2
        v = np.cross(n, u)
        pos = np.full((2, 2, 3), -1.0)
        state = np.zeros((2, 2), np.int8)
        out = []
        for (r, c), (a_r, a_c) in zip(((0, 0), (0, 1), (1, 0), (1, 1)), ((-.5, -.5), (-.5, .5), (.5, -.5), (.5, .5))):
            guess = p0 + a_r * step * v + a_c * step * u
            p, _ = K.solve_corner(pos, state, r, c, guess, step, WEIGHTS, field.pool, field.slots, shape, J, res, 20)
            if SB.band_test(field.pool, field.slots, shape, p, n, 0.0, gap, accept, band) != SB.BAND_OK:
                break
            if gap > 0 and SB.merged_by_context(field.pool, field.slots, shape, p, n, accept)[0]:
                return "merged"
            p, t = p + band[0] * n, band[1]
            if not (K.inside(p, shape, 0.5) and K.on_surface(pos, state, r, c, p, accept, field.pool, field.slots,
                                                             shape)):
                break
            pos[r, c], state[r, c] = p, K.ON_SURFACE
            out.append((p, t))
        if len(out) == 4:  # dropout only thins a band along a line: the thickest reading is the best
            t_max = float(max(t for _, t in out))
            return [(p, t_max) for p, _ in out]
    return None


#: grid steps (rings) searched around a seed on a fused band for a start beside the zone
FUSED_MOVE = 6


def _seed_beside_fused(field: DistanceField, p0, frame, a0: float, step: float, accept: float, gap: float):
    """A start beside the fused zone a seed at ``p0`` sits on: points on rings of 1..:data:`FUSED_MOVE`
    grid steps around it in the tangent plane (8 per ring, nearest first), each snapped onto the
    surface (:func:`project_to_surface`), whose seed quad fits off any merged band →
    ``(start, quad)``, or None. Which of the two wraps it lands on is the geometry's (the side of the
    zone nearest the seed); the grower then keeps to it."""
    t1, t2, _ = frame
    for k in range(1, FUSED_MOVE + 1):
        for j in range(8):
            a = a0 + j * math.pi / 4
            q = project_to_surface(field, p0 + k * step * (math.cos(a) * t1 + math.sin(a) * t2))
            if K.dist_only(field.pool, field.slots, field.shape, *q) > accept or not K.inside(q, field.shape, 1.0):
                continue
            field.ensure_around(q[None], max(3 * step + 4, 1.5 * step + CONTEXT_READ))
            try:
                fr = local_frame(field, q, max(3.0, min(step, 8.0)))
            except ValueError:
                continue
            quad = _seed_quad(field, q, fr, a0, step, accept, gap)
            if quad is not None and not isinstance(quad, str):
                return q, quad
    return None


def grow_patch(field: DistanceField, seed_xyz, step: float, generations: int, accept: float = 1.5,
               rng: np.random.Generator | None = None, progress=None, iters: int = 12,
               sheet_gap: float = 2.0, bridge_cells: int = 2) -> GrowResult:
    """Grow a patch from ``seed_xyz`` (x, y, z voxels); see the module docstring."""
    rng = rng or np.random.default_rng(0)
    shape = field.shape
    p0 = project_to_surface(field, seed_xyz)
    d0 = K.dist_only(field.pool, field.slots, shape, *p0)
    snap = max(4.0, 0.5 * step)
    if d0 > accept or np.linalg.norm(p0 - np.asarray(seed_xyz, float)) > snap:
        return _empty(f"no predicted surface within {snap:g} voxels of the seed "
                      f"{[round(float(v), 1) for v in seed_xyz]}")
    field.ensure_around(p0[None], max(3 * step + 4, 1.5 * step + CONTEXT_READ))
    try:
        t1, t2, _n = local_frame(field, p0, max(3.0, min(step, 8.0)))
    except ValueError as exc:
        return _empty(str(exc))
    a0 = rng.uniform(0, 2 * math.pi)
    size = 2 * generations + 12
    pos = np.full((size, size, 3), -1.0)
    state = np.zeros((size, size), np.int8)
    gen = np.zeros((size, size), np.uint16)
    tried = np.full((size, size), -1, np.int64)
    tref = np.zeros((size, size))
    bridge = np.zeros((size, size), np.int32)
    why = np.zeros((size, size), np.int8)
    stats = np.zeros(K.N_REASONS, np.int64)
    max_corners = size * size
    hbits = max(10, int(math.ceil(math.log2(max_corners * 2))))
    heads = np.full(1 << hbits, -1, np.int64)
    nxt = np.full(max_corners, -1, np.int64)
    cell_rc = np.zeros((max_corners, 2), np.int64)
    count = 0
    c0 = size // 2
    quad = _seed_quad(field, p0, (t1, t2, _n), a0, step, accept, sheet_gap)
    moved = None
    if isinstance(quad, str):  # on two merged wraps: start beside the fused zone instead
        found = _seed_beside_fused(field, p0, (t1, t2, _n), a0, step, accept, sheet_gap)
        if found is None:
            res = _empty("the seed sits on a fused band (two wraps' bands merged into one, so which wrap to "
                         f"follow cannot be told there) and no start within {FUSED_MOVE * step:g} voxels is "
                         "beside it; seed beside the fused zone")
            res.refusals, res.attempts, res.detail = dict.fromkeys(REASONS, 0), 1, {"fused_seed": 1}
            res.refusals["fused_band"] = 1
            return res
        moved = p0
        p0, quad = found
    if quad is None:
        return _empty("the seed quad does not fit on the predicted surface in any of 8 orientations (too "
                      "curved, holed or close to another wrap for step_size)")
    for (r, c), (p, t) in zip(((c0, c0), (c0, c0 + 1), (c0 + 1, c0), (c0 + 1, c0 + 1)), quad):
        pos[r, c] = p
        state[r, c] = K.ON_SURFACE
        tref[r, c] = t
        K.hash_insert(heads, nxt, cell_rc, count, p[0], p[1], p[2], step, r, c)
        count += 1
    tref[state == K.ON_SURFACE] = np.median(tref[state == K.ON_SURFACE])
    reason = f"reached generations={generations}"
    g = 0
    for g in range(1, generations + 1):
        cells = K.fringe(state, tried)
        if len(cells) == 0:
            reason = "no more surface to grow onto (fringe empty)"
            g -= 1
            break
        anchor = []
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = np.clip(cells[:, 0] + dr, 0, size - 1), np.clip(cells[:, 1] + dc, 0, size - 1)
            ok = state[rr, cc] == K.ON_SURFACE
            anchor.append(pos[rr[ok], cc[ok]])
        anchor = np.concatenate(anchor)
        field.ensure_around(anchor, 2 * step + BAND_READ)
        count = K.grow_generation(pos, state, gen, tried, tref, bridge, cells, g, step, WEIGHTS, accept, sheet_gap,
                                  bridge_cells, field.pool, field.slots, shape, heads, nxt, cell_rc, count, iters,
                                  stats, why)
        K.refine_recent(pos, state, gen, tref, bridge, max(1, g - 2), step, WEIGHTS, accept, sheet_gap, bridge_cells,
                        field.pool, field.slots, shape, 6)
        if progress is not None:
            progress(g / max(generations, 1), f"generation {g}: {int((state == K.ON_SURFACE).sum())} corners")
        # grid nearly full: stop before hitting the array border
        rows = np.nonzero((state == K.ON_SURFACE).any(1))[0]
        cols = np.nonzero((state == K.ON_SURFACE).any(0))[0]
        if rows[0] < 3 or cols[0] < 3 or rows[-1] > size - 4 or cols[-1] > size - 4:
            reason = "grid full"
            break
    on = state == K.ON_SURFACE
    on &= (bridge == 0) | K.spanning_bridges(on, bridge)  # bridges that hang off the rim go
    audit = {}
    if sheet_gap > 0:
        piece, audit = _audited_component(pos, state, tref, bridge, step, field, (c0, c0), accept)
        on &= piece
    rows = np.nonzero(on.any(1))[0]
    cols = np.nonzero(on.any(0))[0]
    r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, size)
    c0_, c1 = max(cols[0] - 2, 0), min(cols[-1] + 3, size)
    pts = np.where(on[..., None], pos, -1.0)[r0:r1, c0_:c1].astype(np.float32)
    gens = np.where(on, gen, 0)[r0:r1, c0_:c1].astype(np.uint16)
    onc = on[r0:r1, c0_:c1]
    quads = onc[:-1, :-1] & onc[1:, :-1] & onc[:-1, 1:] & onc[1:, 1:]
    refusals = dict.fromkeys(REASONS, 0)
    for k in range(1, K.N_REASONS):
        refusals[OUTCOMES[k][1]] += int(stats[k])
    detail = {OUTCOMES[k][0]: int(stats[k]) for k in range(K.N_REASONS) if stats[k]}
    if moved is not None:
        detail["fused_seed_moved"] = 1
    if not quads.any():
        res = _empty(f"no quad left after the sheet audit ({reason})")
        res.refusals, res.attempts, res.detail, res.audit = refusals, int(stats.sum()), detail, audit
        return res
    return GrowResult(pts, gens, int(onc.sum()), int(g), float(quads.sum() * step * step), reason, refusals,
                      int(stats.sum()), p0, detail, why[r0:r1, c0_:c1].copy(), (bridge > 0)[r0:r1, c0_:c1] & onc,
                      np.where(on, tref, 0)[r0:r1, c0_:c1].astype(np.float32), audit, moved)
