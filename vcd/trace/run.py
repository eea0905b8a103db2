"""One ``vc_grow_seg_from_segments`` run: load patches, trace, write ``auto_trace_<ts>`` with
provenance (``vcd_provenance.json`` + ``vcd_supporters.npz``), QA (``qa.tif``, ``qa.png``) and debug
snapshots ``z_dbg_gen_<N>``. A crash mid-trace still writes the partial result (meta
``vcd_incomplete``) before the error propagates.

Provenance (a file VC3D ignores; its layout in :mod:`vcd.formats.provenance`) answers "which traces
used patch P?". The npz holds ``names`` and ``ids`` (int32 [rows, cols, K] indices into ``names`` per
trace corner, -1 = none) and the QA components per corner (``support``, ``disagree``, ``rival``,
``offsurf``; see :mod:`vcd.trace.qa`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import tifffile

from .. import __version__
from ..errors import FormatError, InputError, is_interrupt
from ..formats.naming import unique_name
from ..formats.provenance import PROVENANCE, SUPPORTERS
from ..formats.tifxyz import area_cm2, surface_area_vx2, write_surface
from ..kernels.points import INVALID, valid_mask
from ..formats.volume import open_volume
from . import qa
from .params import TraceParams
from .patches import PatchSet
from .state import TraceState
from .tracer import Tracer
from .upsample import upsample


def _outputs(st: TraceState, ps: PatchSet, p: TraceParams):
    pts = upsample(st, ps, max(1, int(round(p.step))), p.same_surface_th)
    v = st.valid
    rows, cols = np.nonzero(v.any(1))[0], np.nonzero(v.any(0))[0]
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    K = max([len(s) for s in st.supporters.values()] + [1])
    ids = np.full(v[sl].shape + (K,), -1, np.int32)
    counts: dict[int, int] = {}
    for (r, c), sup in st.supporters.items():
        if v[r, c]:
            ids[r - rows[0], c - cols[0], :len(sup)] = sup
            for s in sup:
                counts[s] = counts.get(s, 0) + 1
    qmap = qa.suspicion_map(st.pos[sl], v[sl], st.support[sl], st.disagree[sl], st.rival[sl],
                            p.inlier_base_threshold, st.offsurf[sl])
    return pts, ids, counts, qmap, sl


def write_trace(path: Path, st: TraceState, ps: PatchSet, p: TraceParams, params_raw: dict, voxelsize: float,
                volume: str, src_dir: Path, seed_name: str, retrace_of: str | None, extra_meta: dict) -> Path:
    """Write a trace: the upsampled grid as tifxyz, its provenance, QA map and support channels (one of
    :func:`run_trace`'s snapshots or its final output).

    Parameters
    ----------
    path : pathlib.Path
        The trace directory to write (staged, then renamed).
    st : TraceState
        The corner grid.
    ps : PatchSet
        The patches traced over.
    p : TraceParams
        The trace params (``src_step``: voxels per written cell).
    params_raw : dict
        The params as given, recorded in meta and provenance.
    voxelsize : float
        µm per voxel (for ``area_cm2``).
    volume : str
        The volume, as recorded.
    src_dir : pathlib.Path
        The ``paths/`` directory.
    seed_name : str
        The seed patch's name.
    retrace_of : str or None
        The trace this one reruns.
    extra_meta : dict
        Added to ``meta.json``.

    Returns
    -------
    pathlib.Path
        The written trace directory.
    """
    pts, ids, counts, qmap, sl = _outputs(st, ps, p)
    area = surface_area_vx2(pts)
    used = sorted(ps.names[i] for i in counts)
    prov = {"version": 1, "seed": seed_name, "params": params_raw, "volume": str(volume), "src_dir": str(src_dir),
            "retrace_of": retrace_of, "supporters": SUPPORTERS,
            "patches": {ps.names[i]: {"mask_sha1": None, "approval_sha1": None,  # null: no mask.tif / approval.tif
                                      **{k: v for k, v in ps.info[ps.names[i]].items() if k != "excluded"},
                                      "corners": n} for i, n in sorted(counts.items())},
            "excluded_defective": sorted(n for n, i in ps.info.items() if i.get("excluded"))}
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.array(ps.names), ids=ids, support=st.support[sl], disagree=st.disagree[sl],
                        rival=st.rival[sl], offsurf=st.offsurf[sl])
    qbuf = io.BytesIO()
    tifffile.imwrite(qbuf, qmap.astype(np.float32))
    meta = {"area_vx2": area, "area_cm2": area_cm2(area, voxelsize), "source": "vcd_trace",
            "vc_grow_seg_from_segments_params": {**params_raw, "tgt_dir": str(path.parent)},
            "used_approved_segments": sorted(ps.names[i] for i in st.used_approved),
            "generations": st.generations, "vcd_stop_reason": st.stop_reason, "vcd_version": __version__,
            "qa": qa.summary(qmap), "vcd_patches_used": len(used), **extra_meta}
    if retrace_of:
        meta["retrace_of"] = retrace_of
    out = write_surface(path, pts, meta, scale=[1.0 / p.src_step] * 2,
                        extra_files={PROVENANCE: (json.dumps(prov, indent=2) + "\n").encode(),
                                     SUPPORTERS: buf.getvalue(), "qa.tif": qbuf.getvalue(),
                                     "qa.png": qa.png(qmap, path.name)})  # staged: the directory appears whole
    return out


def run_trace(volume: str | os.PathLike, src_dir: str | os.PathLike, tgt_dir: str | os.PathLike, params_raw: dict,
              seed: str | os.PathLike, progress=None, warn=print, retrace_of: str | None = None) -> dict:
    """One consensus trace (``vc_grow_seg_from_segments``), written as ``auto_trace_<ts>`` with its provenance.

    Parameters
    ----------
    volume : path
        The volume the patches were grown on (OME-Zarr); read only for its voxel size (µm), as VC3D.
    src_dir : path
        The patch collection (``paths/``): ``auto_grown_*`` tifxyz grids of ``(x, y, z)`` level-0
        voxels, linked by their ``overlapping.json``.
    tgt_dir : path
        Where the trace is written (created if missing), e.g. ``traces/``.
    params_raw : dict
        VC3D's tracer params (:class:`~vcd.trace.params.TraceParams` keys; ``step``, ``src_step`` in
        voxels per grid cell).
    seed : path
        The seed patch directory (in ``src_dir``, or outside it: then added to the set).
    progress : callable ``(fraction, message)``, optional
    warn : callable ``(message)``
    retrace_of : str, optional
        The name of the trace this one reruns (recorded in the provenance).

    Returns
    -------
    dict
        ``written`` (the trace's directory name in ``tgt_dir``), ``area_cm2`` (cm²), ``generations``,
        ``corners`` (valid grid vertices), ``stop_reason``, ``patches_used``, ``qa_suspicious``
        (corners the QA flags), ``skipped_patches``.

    Raises
    ------
    InputError
        A missing, defective or unlinked seed, or no usable patch. Interrupted (Ctrl-C, a crash):
        the partial grid is kept as a trace with ``vcd_incomplete`` in its meta, then the
        exception propagates.
    """
    src_dir, tgt_dir, seed = Path(src_dir), Path(tgt_dir), Path(seed)
    p = TraceParams.from_dict(params_raw)
    voxelsize = open_volume(volume).voxelsize  # the tracer reads the volume only for voxelsize, as VC3D
    tgt_dir.mkdir(parents=True, exist_ok=True)
    if not (seed / "meta.json").exists():
        raise InputError(seed, "seed patch not found (no meta.json)", "pass a patch directory from PATHS")
    seed_in_src = (src_dir / seed.name).resolve() == seed.resolve()
    ps = PatchSet.load(src_dir, warn=warn, extra=[] if seed_in_src else [seed], src_step=p.src_step, seed=seed.name)
    if not [n for n in ps.names if seed_in_src or n != seed.name]:
        raise InputError(src_dir, "no usable patches in the collection", "grow patches first (vcd grow / vcd daemon)")
    si = ps.index(seed.name)
    if si is None:
        if ps.info.get(seed.name, {}).get("excluded"):
            raise InputError(seed, "seed patch is tagged defective", "choose another seed or clear the tag")
        raise InputError(seed, "seed patch could not be loaded", "check it with `vcd info`")
    if not ps.links[si]:
        raise InputError(seed, "seed patch has no overlaps (overlapping.json empty or missing)",
                         "link the collection first: `vcd seg-add-overlap PATHS SEED` (the daemon does it)")

    def snapshot(st, gen):
        try:
            name = f"z_dbg_gen_{gen:05d}"
            d = tgt_dir / name
            if d.exists():  # out of sight first: a kill -9 mid-delete must not leave a half snapshot
                old = tgt_dir / f".{name}.old-{os.getpid()}"
                os.replace(d, old)
                shutil.rmtree(old)
            write_trace(d, st, ps, p, params_raw, voxelsize, str(volume), src_dir, seed.name, retrace_of,
                        {"vcd_debug_snapshot": True})
        except Exception as exc:  # a snapshot must never kill the trace
            warn(f"debug snapshot at generation {gen} failed: {exc}")

    tracer = Tracer(ps, si, p, progress=progress, warn=warn, snapshot=snapshot)
    name = unique_name(tgt_dir, "auto_trace_")
    try:
        st = tracer.run()
    except BaseException as exc:  # never lose the partial result
        st = tracer.state
        if st is not None and st.valid.sum() >= 4:
            # Ctrl-C says so, also when numba wrapped it in a SystemError (see is_interrupt)
            st.stop_reason = "crashed: KeyboardInterrupt" if is_interrupt(exc) else \
                f"crashed: {type(exc).__name__}: {exc}"
            write_trace(tgt_dir / name, st, ps, p, params_raw, voxelsize, str(volume), src_dir, seed.name,
                        retrace_of, {"vcd_incomplete": st.stop_reason})
            warn(f"trace interrupted; partial result kept in {tgt_dir / name}")
        raise
    for attempt in range(5):  # named when written: two traces started in the same ms must not collide
        name = unique_name(tgt_dir, "auto_trace_")
        try:
            out = write_trace(tgt_dir / name, st, ps, p, params_raw, voxelsize, str(volume), src_dir, seed.name,
                              retrace_of, {})
            break
        except FormatError:
            if attempt == 4 or not (tgt_dir / name).exists():
                raise
    meta = json.loads((out / "meta.json").read_text())
    return {"written": name, "area_cm2": meta["area_cm2"], "generations": st.generations,
            "corners": int(st.valid.sum()), "stop_reason": st.stop_reason, "patches_used": meta["vcd_patches_used"],
            "qa_suspicious": meta["qa"]["suspicious"], "skipped_patches": ps.skipped}


def checkpoint(trace_dir: str | os.PathLike, paths: str | os.PathLike, mask: str | os.PathLike | None = None,
               user: str = "") -> str:
    """The tutorial's checkpointing: turn a trace (or its unmasked part) into an approved
    ``auto_grown_*`` superpatch.

    The superpatch is written unlinked: linking is the overlap job's (the daemon queues it for every
    new patch; ``vcd checkpoint`` links it in the foreground).

    Parameters
    ----------
    trace_dir : str or os.PathLike
        The trace directory.
    paths : str or os.PathLike
        The ``paths/`` directory to write the superpatch in.
    mask : str or os.PathLike, optional
        An extra mask image (page 0, 0 = drop) applied on top of the trace's own ``mask.tif``.
    user : str
        Recorded with the ``approved`` tag.

    Returns
    -------
    str
        The superpatch's name.
    """
    from ..formats.tifxyz import read_mask_grid, read_surface, set_tag
    src = read_surface(trace_dir)
    pts = src.points.copy()
    if mask:
        keep = read_mask_grid(mask, pts.shape[0], pts.shape[1])
        pts[~keep] = INVALID
    if not valid_mask(pts).any():
        raise InputError(trace_dir, "nothing left to checkpoint (everything masked)", "use a mask that keeps part of it")
    paths = Path(paths)
    name = unique_name(paths, "auto_grown_")
    meta = {"source": "vcd_checkpoint", "vcd_checkpoint_of": Path(trace_dir).name,
            "area_vx2": surface_area_vx2(pts)}
    write_surface(paths / name, pts, meta, scale=list(src.scale))
    set_tag(paths / name, "approved", user=user)
    return name
