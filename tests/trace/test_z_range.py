"""Issue 15 item 5: VC3D's trace keys ``z_range`` / ``z_min`` / ``z_max`` — the tracer keeps only
corners whose z (voxels) lies in the range; without them the trace is unlimited."""

import numpy as np
import pytest

from vcd.errors import InputError
from vcd.formats.tifxyz import read_surface
from vcd.trace.params import TraceParams

from . import tiling


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    vp = tiling.spiral_scroll(tmp_path_factory.mktemp("zr") / "t.volpkg")
    names = tiling.tile(vp, 30)
    tiling.link(vp)
    return vp, names


def _z(vp, res):
    s = read_surface(vp / "traces" / res["written"])
    return s.points[s.valid][:, 2]


def test_params_z_keys():
    assert TraceParams.from_dict({}).z_bounds is None
    assert TraceParams.from_dict({"z_min": 40, "z_max": 10}).z_bounds == (10.0, 40.0)
    assert TraceParams.from_dict({"z_range": [30, 20], "z_min": 0, "z_max": 99}).z_bounds == (20.0, 30.0)
    assert TraceParams.from_dict({"z_max": 50}).z_bounds == (-np.inf, 50.0)
    with pytest.raises(InputError, match="z_range"):
        TraceParams.from_dict({"z_range": 5})


def test_trace_stays_within_z_range(tiled):
    vp, names = tiled
    seed = tiling.middle_seed(vp, names)
    free = _z(vp, tiling.trace(vp, seed))
    zs = read_surface(vp / "paths" / seed).points[..., 2]
    zc = float(np.median(zs[zs > -1]))
    lo, hi = zc - 25.0, zc + 25.0
    assert free.min() < lo - 5 and free.max() > hi + 5, (free.min(), free.max(), lo, hi)  # the limit bites
    for extra in ({"z_min": lo, "z_max": hi}, {"z_range": [hi, lo]}):
        z = _z(vp, tiling.trace(vp, seed, **extra))
        assert z.min() >= lo - 0.5 and z.max() <= hi + 0.5, (extra, z.min(), z.max())
        assert len(z) >= 0.2 * len(free) and z.max() - z.min() >= 30, (len(z), len(free), z.min(), z.max())
