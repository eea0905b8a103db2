"""Make the README's preview samples (docs/img/) from a synthetic scroll.

    python tools/make_preview_samples.py [OUT_DIR]   # default docs/img

Builds a 128×192×192 medium synthetic scroll in a temporary directory, plants patches sampled
from the ground-truth sheet (denser on the inner wraps, so the density map shows where
expansion still has work), links overlapping ones, tags one approved, one defective and masks
one, adds a trace with provenance and a QA map, and writes:
``slice_z.png``, ``slice_z_overlaps.png``, ``slice_y.png``, ``trace.png``, ``trace_qa.png``, ``density.png``.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from vcd.formats.overlaps import link
from vcd.formats.tifxyz import timestamp_name, update_meta, write_mask, write_surface
from vcd.post.preview import preview_density, preview_slice, preview_trace
from vcd.synth import load_truth, make_scroll


def main(out_dir: str = "docs/img") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vp = make_scroll(Path(tmp) / "sample.volpkg", shape=(128, 192, 192), preset="medium", seed=3)
        t = load_truth(vp)
        rng = np.random.default_rng(0)
        names, spans = [], []
        i = 0
        for th in np.arange(1.0, t.theta1 - t.theta0 - 1.5, 0.9):
            reps = 3 if th < 9 else 1 if th < 16 else 0  # inner wraps well covered, outer sparse/empty
            for _ in range(reps):
                a = th + rng.uniform(-0.3, 0.3)
                z0 = rng.uniform(5, 40)
                g = t.sample_grid(t.theta0 + a, t.theta0 + a + 1.6, z0, z0 + rng.uniform(50, 80), 4)
                name = f"auto_grown_20250101{i:09d}"
                write_surface(vp / "paths" / name, g, {"scale": [0.25, 0.25], "source": "vcd_grow",
                                                       "area_cm2": 0.01})
                names.append(name)
                spans.append((a, a + 1.6))
                i += 1
        for j, (a0, a1) in enumerate(spans):  # link patches whose theta ranges overlap
            others = [names[k] for k, (b0, b1) in enumerate(spans) if k != j and b0 < a1 and a0 < b1]
            if others:
                link(vp / "paths", names[j], others)
        (vp / "expand.json").write_text(json.dumps({"tgt_overlap_count": 4}))
        support = [n for n, (a0, a1) in zip(names, spans) if a1 > 3.0 and a0 < 6.5]
        update_meta(vp / "paths" / support[0], lambda m: m.setdefault("tags", {}).update(approved=None))
        update_meta(vp / "paths" / support[1], lambda m: m.setdefault("tags", {}).update(defective=None))
        rows, cols = tifffile.imread(vp / "paths" / support[2] / "x.tif").shape
        keep = np.full((rows, cols), 255, np.uint8)
        keep[:, : cols // 3] = 0
        write_mask(vp / "paths" / support[2], keep)
        tg = t.sample_grid(t.theta0 + 3.0, t.theta0 + 6.5, 12, 110, 4)
        q = np.clip(rng.normal(0.15, 0.08, tg.shape[:2]), 0, 1).astype(np.float32)
        q[10:14, 18:24] = 0.95  # a suspicious spot
        q[tg[..., 0] < 0] = -1
        qb = io.BytesIO()
        tifffile.imwrite(qb, q)
        (vp / "traces").mkdir(exist_ok=True)
        tr = write_surface(vp / "traces" / timestamp_name("auto_trace_"), tg,
                           {"scale": [0.25, 0.25], "source": "vcd_trace"},
                           extra_files={"qa.tif": qb.getvalue(), "vcd_provenance.json": json.dumps({
                               "version": 1, "volume": str(vp / "volumes" / "synth_ct.zarr"),
                               "src_dir": str(vp / "paths"),
                               "patches": {n: {"mask_sha1": None, "tags": []} for n in support}}).encode()})
        preview_slice(vp, out / "slice_z.png", axis="z", index=64, scale=3)
        preview_slice(vp, out / "slice_z_overlaps.png", axis="z", index=64, color_by="overlaps", scale=3)
        preview_slice(vp, out / "slice_y.png", axis="y", index=96, scale=3)
        preview_trace(tr, out / "trace.png")
        preview_trace(tr, out / "trace_qa.png", qa=True)
        st = preview_density(vp, out / "density.png", bin_size=8)["stats"]
        print(f"wrote {out}: {len(names)} patches; density: {st}")


if __name__ == "__main__":
    main(*sys.argv[1:])
