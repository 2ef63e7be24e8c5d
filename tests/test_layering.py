"""The package's layers: imports only go downward, and no module imports itself in a circle.

core <- data <- models <- one package per paper (rnode, infocnf, parts, sparse, flowmatching;
none imports another) <- collection. ``cnflib/__init__.py`` may re-export from the core.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cnflib"
RANK = {"core": 0, "data": 1, "models": 2, "rnode": 3, "infocnf": 3, "parts": 3, "sparse": 3, "flowmatching": 3,
        "collection": 4}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every cnflib module ``path`` imports (``from cnflib.x import y`` names ``cnflib.x`` and, if
    it is a module, ``cnflib.x.y``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnflib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnflib"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
                      or (PACKAGE.parent / node.module.replace(".", "/") / a.name / "__init__.py").exists()}
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_is_in_a_known_layer():
    unknown = sorted({_layer(m) for m in MODULES} - set(RANK) - {""})
    assert not unknown, f"cnflib subpackages without a layer: {unknown}; add them to RANK in this test"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_imports_go_downward(module):
    here = _layer(module)
    for target in _imports(MODULES[module]):
        there = _layer(target)
        if not there or there == here:
            continue
        assert RANK[there] < RANK[here], f"{module} imports {target}: {there} is not below {here}"


def test_no_circular_imports():
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m and not t.endswith("__init__")} for m, p in MODULES.items()}
    graph = {m: {t for t in ts if not MODULES[t].name == "__init__.py"} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("circular import: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_top_level_names_a_curated_api():
    import cnflib

    assert cnflib.__all__ and all(hasattr(cnflib, name) for name in cnflib.__all__)
    for package in ("core", "models", "rnode", "infocnf", "parts", "sparse", "collection", "data"):
        module = __import__(f"cnflib.{package}", fromlist=["__all__"])
        assert all(hasattr(module, name) for name in module.__all__), package
