"""The import rule of docs/architecture.md, checked on the source (no import is executed).

``cli -> daemon -> jobs -> grow | trace | post -> formats -> kernels``; ``errors`` and ``figure``
(and the package root, ``vcd.__version__``) are leaves any package may import; ``grow``, ``trace``
and ``post`` are siblings that never import each other; ``synth`` imports only ``formats`` and
``kernels``; ``daemon`` takes from ``post`` only the previews and the density rule. Every import
counts — module-level and the ones inside functions (which hide circles from Python but not from a
reader) — and no two modules may import each other, directly or around a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vcd"

LEAVES = {"vcd", "errors", "figure"}            # import nothing of vcd; importable from anywhere
BELOW_ALGORITHMS = {"formats", "kernels"}
ALLOWED = {                                     # package -> the packages it may import (besides LEAVES)
    "kernels": set(),
    "formats": {"kernels"},
    "synth": BELOW_ALGORITHMS,
    "grow": BELOW_ALGORITHMS,
    "trace": BELOW_ALGORITHMS,
    "post": BELOW_ALGORITHMS,
    "jobs": {"grow", "trace", "post"} | BELOW_ALGORITHMS,
    "daemon": {"jobs", "post"} | BELOW_ALGORITHMS,
    "cli": {"daemon", "jobs", "grow", "trace", "post", "synth"} | BELOW_ALGORITHMS,
    "__main__": {"cli"},
}
# the daemon runs no algorithm: from post it takes only the previews, the collection's density rule and
# the final-sheet choice autoseg plans from (the QA gate itself runs in the gate job)
DAEMON_FROM_POST = ("vcd.post.preview", "vcd.post.coverage", "vcd.post.final_sheets")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    """``vcd.daemon.queue`` -> ``daemon``; ``vcd`` -> ``vcd``; ``vcd.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vcd"


def _known(name: str) -> str:
    """The module a dotted name lands in (``vcd.formats.volpkg.is_trace`` -> ``vcd.formats.volpkg``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imported_modules(module: str) -> list[tuple[str, int]]:
    """Every vcd module ``module`` imports, anywhere in its body, with the line of the import."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(_known(a.name), node.lineno) for a in node.names if a.name.split(".")[0] == "vcd"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix.split(".")[0] != "vcd":
                continue
            found += [(_known(f"{prefix}.{a.name}"), node.lineno) for a in node.names]
    return [(target, line) for target, line in found if target != module]


GRAPH = {m: imported_modules(m) for m in MODULES}


def test_the_walk_sees_function_level_imports():
    # the scheduler starts autoseg lazily, inside a method: the walk must still see that edge
    assert "vcd.daemon.autoseg" in {t for t, _ in GRAPH["vcd.daemon.scheduler"]}
    assert len(MODULES) > 100


def layer_violation(source: str, target: str) -> str | None:
    src, dst = package_of(source), package_of(target)
    if src == dst:
        return None
    if src in LEAVES:
        return f"{src} is a leaf and imports nothing of vcd"
    if dst in LEAVES:
        return None
    if dst not in ALLOWED.get(src, set()):
        return f"{src} may import only {sorted(ALLOWED.get(src, set()) | LEAVES)}"
    if src == "daemon" and dst == "post" and not target.startswith(DAEMON_FROM_POST):
        return f"the daemon takes from post only {DAEMON_FROM_POST}"
    return None


def test_imports_point_one_way():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}: {why}"
           for m, edges in GRAPH.items() for t, line in edges
           if (why := layer_violation(m, t))]
    assert not bad, "imports up a layer or across siblings (docs/architecture.md):\n" + "\n".join(bad)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_cycle_finder_finds_a_loop():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = {m: {t for t, _ in edges} for m, edges in GRAPH.items()}
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other (move the shared part down):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)
