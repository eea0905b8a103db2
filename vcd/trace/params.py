"""``TraceParams``: the params JSON of ``vc_grow_seg_from_segments`` — VC3D's keys and defaults.

Units: a trace cell is ``step × src_step`` voxels (``step`` in patch pixels, ``src_step`` voxels per
patch pixel — it must equal the patches' ``step_size``). Extra vcd keys: ``max_generations``,
``snapshot_every`` (debug snapshots ``z_dbg_gen_<N>``; 0 = none), ``window_cells`` (active window
width in cells; 0 = ``sliding_w`` as VC3D), ``min_supporters`` (distinct agreeing patches a corner
needs, VC3D's hard-coded 2), ``bridge_cells`` (longest gap between patch groups, in cells, that the
front may cross by the grid's own smoothness when patches on the far side agree; 0 = never).

Z limits (VC3D's ``z_range`` / ``z_min`` / ``z_max``, voxels): the tracer keeps only corners whose z
lies in ``[z_min, z_max]`` (bounds inclusive; a reversed pair is swapped, as VC3D does). ``z_range``
(``[z_min, z_max]``) wins over ``z_min``/``z_max``. Default: no limit. Unlike VC3D (which needs both),
one of ``z_min``/``z_max`` alone limits that side only; a malformed value is an error, not ignored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import InputError
from ..formats.paramkeys import coerce, fields_from_dict

#: keys of VC3D's tracer params vcd accepts without using them (no "unknown param" warning);
#: ``tgt_dir`` is what VC3D records in a trace's meta
VC3D_IGNORED = ("use_cuda", "generations", "rewind_gen", "step_size", "tgt_dir")


#: example values for errors about keys whose default is None
_EXAMPLE = {"z_range": [1000.0, 2000.0], "z_min": 1000.0, "z_max": 2000.0}


@dataclass
class TraceParams:
    flip_x: bool = False
    global_steps_per_window: int = 0
    step: float = 10
    src_step: float = 20
    max_width: float = 80000
    consensus_default_th: int = 10
    consensus_limit_th: int = 2
    inlier_base_threshold: int = 20
    local_cost_inl_th: float = 0.2
    same_surface_th: float = 2.0
    straight_weight: float = 0.7
    straight_weight_3D: float = 4.0
    dist_loss_2d_w: float = 1.0
    dist_loss_3d_w: float = 2.0
    z_loc_loss_w: float = 0.1
    straight_min_count: float = 1.0
    sliding_w_scale: float = 1.0
    z_range: list | None = None
    z_min: float | None = None
    z_max: float | None = None
    use_cuda: bool = True
    # vcd
    max_generations: int = 100000
    snapshot_every: int = 50
    window_cells: int = 0
    min_supporters: int = 2
    bridge_cells: int = 3

    @classmethod
    def from_dict(cls, d: dict, source: str = "params", warn=None) -> "TraceParams":
        """Build from a params JSON object; wrong types raise InputError (booleans must be JSON
        booleans or "true"/"false"), unknown keys get one warning each naming the closest known key."""
        kw = fields_from_dict(cls, d, source, warn, cls.known_keys(), _EXAMPLE)
        if kw.get("z_range") is not None:
            if len(kw["z_range"]) != 2:
                raise InputError(source, f"param 'z_range' has invalid value {d['z_range']!r} (not two numbers)",
                                 f"use a value like {_EXAMPLE['z_range']!r}")
            kw["z_range"] = sorted(coerce(z, float, "z_range", source, _EXAMPLE["z_range"]) for z in kw["z_range"])
        p = cls(**kw)
        if p.step <= 0 or p.src_step <= 0:
            raise InputError(source, "step and src_step must be > 0", "use the patches' step_size as src_step")
        return p

    @classmethod
    def known_keys(cls) -> set[str]:
        """Every key a params file may hold: the fields and VC3D keys accepted without use."""
        return {f.name for f in fields(cls)} | set(VC3D_IGNORED)

    @property
    def z_bounds(self) -> tuple[float, float] | None:
        """``(z_min, z_max)`` voxels a corner's z must lie in (inclusive), or None for no limit;
        ``z_range`` wins over ``z_min``/``z_max``, a missing side is unbounded, a reversed pair is swapped."""
        if self.z_range is not None:
            lo, hi = float(self.z_range[0]), float(self.z_range[1])
        elif self.z_min is not None or self.z_max is not None:
            lo = -math.inf if self.z_min is None else float(self.z_min)
            hi = math.inf if self.z_max is None else float(self.z_max)
        else:
            return None
        return (min(lo, hi), max(lo, hi))

    def z_ok(self, z: float) -> bool:
        """True when ``z`` (voxels) is within :attr:`z_bounds` (always, without limits)."""
        b = self.z_bounds
        return b is None or b[0] <= z <= b[1]

    @property
    def cell(self) -> float:
        """Trace cell size in voxels."""
        return float(self.step) * float(self.src_step)

    def to_dict(self) -> dict:
        return asdict(self)
