"""``GrowParams``: the params JSON of ``vc_grow_seg_from_seed`` — VC3D's keys and defaults.

Extra vcd keys (ignored by VC3D, harmless in its JSON): ``seed`` (RNG seed for reproducible random
seeding/expansion; None = from the clock; the growth itself is always seeded from its start point and
this value, so the same point and params give the same patch bit for bit), ``accept_dist`` (voxels a corner and its edges may be
from the predicted surface), ``threshold`` (prediction value counted as surface, 170 as VC3D),
``max_tries`` (random seed attempts), ``bridge_cells`` (grid cells the patch may continue across a
hole of the prediction by its spacing/straightness alone; 0 disables), ``sheet_gap`` (voxels of background between a corner's own
band of prediction and the next band along its normal, below which the corner is refused — where wraps
touch an edge could cross; measured from the band's edge, so it holds for any sheet thickness; 0
disables; see :mod:`vcd.kernels.sheetband`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import InputError
from ..formats.overlaps import TGT_OVERLAP_COUNT
from ..formats.paramkeys import fields_from_dict

#: VC3D keys vcd accepts without using them (no "unknown param" warning)
VC3D_IGNORED = ("use_cuda", "rewind_gen")


@dataclass
class GrowParams:
    mode: str = "seed"                 #: seed (random or explicit), expansion, (resume not supported)
    cache_root: str = ""               #: distance-field cache directory (required by VC3D; default <volpkg>/.vcd/cache)
    generations: int = 100             #: growth rings; patch radius ≈ generations × step_size voxels
    step_size: float = 20.0            #: grid spacing in voxels
    min_area_cm: float = 0.3           #: patches smaller than this (cm²) are not written
    thread_limit: int = 0              #: numba threads (0 = all cores)
    cache_size: float = 1e9            #: bytes of distance chunks kept in memory
    tgt_overlap_count: int = TGT_OVERLAP_COUNT        #: expansion: stop when points are covered this many times
    search_effort: int = 10            #: attempts in point searches
    direction_fields: list = field(default_factory=list)  #: accepted for compatibility; unused
    min_on_prediction_support: float = 0.5     #: share of vertices that must lie on the prediction ...
    require_on_prediction_support: bool = False  #: ... enforced only when true (the share is always in meta)
    seed: int | None = None            #: vcd: RNG seed (reproducible runs)
    accept_dist: float = 1.5           #: vcd: max distance (voxels) of a corner/edge to the prediction
    threshold: int = 170               #: vcd: prediction value counted as surface
    max_tries: int = 1000              #: vcd: random seed attempts
    sheet_gap: float = 2.0             #: vcd: min background (voxels) between the own band and another sheet
    bridge_cells: int = 2              #: vcd: grid cells a patch may continue across a hole in the prediction

    @classmethod
    def from_dict(cls, d: dict, source: str = "params", warn=None) -> "GrowParams":
        """Build from a params JSON object; wrong types raise InputError, unknown keys are left out
        with one warning each naming the closest known key (``warn``, default the log)."""
        kw = fields_from_dict(cls, d, source, warn, cls.known_keys())
        p = cls(**kw)
        if p.mode not in ("seed", "expansion", "random_seed", "explicit_seed"):
            raise InputError(source, f"mode {p.mode!r} is not supported", "use \"seed\" or \"expansion\"")
        if p.step_size <= 0 or p.generations < 0:
            raise InputError(source, "step_size must be > 0 and generations >= 0", "fix the params")
        return p

    @classmethod
    def known_keys(cls) -> set[str]:
        """Every key a params file may hold: the fields and VC3D keys accepted without use."""
        return {f.name for f in fields(cls)} | set(VC3D_IGNORED)

    def to_dict(self) -> dict:
        return asdict(self)
