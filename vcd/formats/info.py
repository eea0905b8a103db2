"""``vcd info``: a summary of whatever a path is — volume, surface or volpkg."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FormatError
from .overlaps import asymmetric_links, read_overlaps
from .tifxyz import area_cm2, read_surface
from .volpkg import is_volpkg, list_patches, list_traces, open_volpkg
from .volume import open_volume


def describe(path: str | os.PathLike) -> dict:
    """Return a JSON-able summary of ``path``; raises :class:`FormatError` for anything malformed."""
    from .zarrio import is_remote
    if is_remote(path):
        return describe_volume(path)
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "does not exist", "check the path")
    if is_volpkg(path):
        return describe_volpkg(path)
    if (path / "x.tif").exists() or (path / "meta.json").exists() and not any(
            (path / d).is_dir() and d.isdigit() for d in os.listdir(path)):
        return describe_surface(path)
    return describe_volume(path)


def describe_volume(path) -> dict:
    """``vcd info`` of a volume: voxel size (µm), level-0 shape ``(z, y, x)``, dtype, zarr format and
    each level's shape and chunks."""
    vol = open_volume(path)
    return {"kind": "volume", "path": str(path), "voxelsize_um": vol.voxelsize,
            "shape_zyx": list(vol.shape), "dtype": str(vol.dtype),
            "zarr_format": vol.levels[0].zarr_format,
            **({"url": vol.url} if vol.url else {}),
            "levels": [{"shape_zyx": list(l.shape), "chunks_zyx": list(l.chunks), "separator": l.separator}
                       for l in vol.levels]}


def describe_surface(path: Path, voxelsize: float | None = None) -> dict:
    """``vcd info`` of a tifxyz surface: grid ``[rows, cols]``, scale, valid points, area (voxels², cm²
    with ``voxelsize`` µm), bbox, source, tags, links, mask."""
    s = read_surface(path)
    rows, cols = s.shape
    area = s.area_vx2()
    out = {"kind": "surface", "path": str(path), "uuid": s.meta.get("uuid"), "grid_rows_cols": [rows, cols],
           "scale": list(s.scale), "valid_points": int(s.valid.sum()), "area_vx2": round(area, 1),
           "bbox": s.bbox(), "source": s.meta.get("source"), "tags": sorted(s.tags),
           "overlaps": len(read_overlaps(path, strict=True)), "mask": (path / "mask.tif").exists()}
    if "vcd_grow_stats" in s.meta:
        out["grow_stats"] = s.meta["vcd_grow_stats"]
    if voxelsize is not None:
        out["area_cm2"] = round(area_cm2(area, voxelsize), 4)
    elif "area_cm2" in s.meta:
        out["area_cm2"] = s.meta["area_cm2"]
    return out


def describe_volpkg(path: Path) -> dict:
    """``vcd info`` of a volpkg: its volumes (:func:`describe_volume`), patches, traces and one-sided
    links."""
    vp = open_volpkg(path)
    vols = {}
    for name in vp.volume_names():
        vols[name] = describe_volume(vp.volumes_dir / name)
    patches = list_patches(vp.paths_dir)
    traces = list_traces(vp.path)
    out = {"kind": "volpkg", "path": str(path), "name": vp.config.get("name"), "volumes": vols,
           "patches": len(patches), "traces": len(traces),
           "patch_area_cm2": round(sum(float(m.get("area_cm2", 0) or 0) for _, m in patches), 4)}
    out.update(describe_one_sided(vp.paths_dir))
    return out


def describe_one_sided(paths_dir: Path, show: int = 10) -> dict:
    """``one_sided_links``: links ``A -> B`` whose ``B`` does not list ``A`` (read as symmetric; VC
    can leave them, villa#846), the first ``show`` of them, and the command that rewrites them."""
    pairs = asymmetric_links(paths_dir) if paths_dir.is_dir() else []
    out = {"one_sided_links": len(pairs)}
    if pairs:
        out["one_sided_examples"] = [f"{a} -> {b}" for a, b in pairs[:show]]
        out["one_sided_fix"] = f"vcd seg-add-overlap --repair {paths_dir}"
    return out
