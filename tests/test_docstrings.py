"""Docstrings of the public entry points (issue 28 item 6), read from the source with ``ast``.

The entry points listed here — what the CLI, the daemon and a notebook call first — carry numpydoc
``Parameters`` and/or ``Returns`` sections stating units and coordinate order. ``python
tests/test_docstrings.py`` prints, per package, how many public functions (not ``_``-named, in
modules not ``_``-named; methods of public classes included) have no numpydoc section and how many
have no docstring at all; ``--list`` names them.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"^\s*(Parameters|Returns|Yields)\s*\n\s*-{3,}", re.M)

#: module path -> qualified names that must have a numpydoc section
ENTRY_POINTS = {
    "vcd/trace/run.py": ["run_trace", "checkpoint"],
    "vcd/grow/run.py": ["run_grow", "grow_surface"],
    "vcd/grow/linking.py": ["link_new_patch"],
    "vcd/jobs/__init__.py": ["submit", "run_job", "execute", "confine_params"],
    "vcd/formats/tifxyz.py": ["read_surface", "write_surface", "write_mask", "read_mask_grid", "update_meta"],
    "vcd/formats/volume.py": ["open_volume", "write_ome_zarr"],
    "vcd/formats/volpkg.py": ["open_volpkg", "create_volpkg", "list_patches", "list_traces"],
    "vcd/formats/overlaps.py": ["read_overlaps", "link", "repair_links"],
    "vcd/formats/provenance.py": ["read_provenance", "recorded_run"],
    "vcd/formats/zarrio.py": ["create_array", "write_array"],
    "vcd/kernels/field.py": ["dist_grad", "dist_many"],
    "vcd/kernels/sample.py": ["sample_dense", "sample_chunked"],
    "vcd/kernels/points.py": ["valid_mask", "valid_quads", "densify_grid"],
    "vcd/kernels/pointsearch.py": ["dist_to_grid", "closest_on_grid"],
    "vcd/kernels/surfsearch.py": ["surfaces_overlap"],
    "vcd/post/qa_gate.py": ["gate_trace", "gate_fused"],
    "vcd/daemon/service.py": ["run_daemon"],
    "vcd/daemon/config.py": ["load_config", "parse", "job_params", "tgt_overlap_count"],
    "vcd/daemon/queue.py": ["JobQueue.claim", "JobQueue.fail", "JobQueue.get", "JobQueue.list"],
}


def _functions(tree: ast.Module):
    """``(qualified name, node)`` of every public function and public-class method of a module."""
    def visit(body, prefix):
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_"):
                yield prefix + n.name, n
            elif isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
                yield from visit(n.body, prefix + n.name + ".")
    yield from visit(tree.body, "")


def public_functions(root: Path = ROOT):
    """``(module path, qualified name, docstring)`` of every public function under ``vcd/``."""
    for f in sorted((root / "vcd").rglob("*.py")):
        rel = f.relative_to(root)
        if any(p.startswith("_") and p != "__init__.py" for p in rel.parts):
            continue
        for name, node in _functions(ast.parse(f.read_text())):
            yield rel.as_posix(), name, ast.get_docstring(node) or ""


def counts(root: Path = ROOT) -> dict[str, tuple[int, int, int]]:
    """Package -> (public functions, without a numpydoc section, without any docstring)."""
    total, no_section, no_doc = Counter(), Counter(), Counter()
    for mod, _, doc in public_functions(root):
        pkg = mod.split("/")[1] if mod.count("/") > 1 else "(top)"
        total[pkg] += 1
        no_section[pkg] += not SECTION.search(doc)
        no_doc[pkg] += not doc.strip()
    return {k: (total[k], no_section[k], no_doc[k]) for k in sorted(total)}


def test_entry_points_have_numpydoc_sections():
    docs = {(mod, name): doc for mod, name, doc in public_functions()}
    missing = [f"{mod}:{name}" for mod, names in ENTRY_POINTS.items() for name in names
               if not SECTION.search(docs.get((mod, name), ""))]
    assert not missing, "no numpydoc Parameters/Returns section (or gone): " + ", ".join(missing)


def test_every_job_kind_run_has_numpydoc_sections():
    from vcd.jobs import KIND_MODULES
    docs = {(mod, name): doc for mod, name, doc in public_functions()}
    missing = [kind for kind, module in KIND_MODULES.items()
               if not SECTION.search(docs.get((module.replace(".", "/") + ".py", "run"), ""))]
    assert not missing, f"job kinds whose run() has no numpydoc section: {missing}"


if __name__ == "__main__":
    rows = counts()
    t = [sum(v[i] for v in rows.values()) for i in range(3)]
    print(f"public functions: {t[0]}; without a numpydoc section: {t[1]}; without a docstring: {t[2]}")
    for pkg, (n, s, d) in rows.items():
        print(f"  {pkg:<8} {n:4d} functions  {s:4d} without a section  {d:4d} without a docstring")
    if "--list" in sys.argv:
        for mod, name, doc in public_functions():
            if not SECTION.search(doc):
                print(f"{mod} {name}{'' if doc.strip() else '  (no docstring)'}")
