"""The package's import graph, lazy and type-checking imports included, has no cycle, and its
layers point one way: benchmarks → pipeline → transforms → models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> dotted package, lowest layer first
LAYERS = {
    "models": "pairsift.models",
    "transforms": "pairsift.transforms",
    "pipeline": "pairsift.pipeline",
    "benchmarks": "pairsift.benchmarks",
}


def module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder, package in LAYERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _targets(name: str, modules: dict[str, Path]) -> set[str]:
    """``name`` and every package above it that is ours: importing a module runs each
    enclosing package's ``__init__`` too."""
    found = set()
    while name:
        if name in modules:
            found.add(name)
        name = name.rpartition(".")[0]
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every pairsift module ``module`` imports, wherever the statement sits."""
    edges: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges |= _targets(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            edges |= _targets(base, modules)
            for alias in node.names:  # `from pkg import submodule`
                edges |= _targets(f"{base}.{alias.name}", modules)
    # a module's own enclosing packages are imported before it: not an edge back
    return {e for e in edges if e != module and not module.startswith(e + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def layer(module: str) -> int:
    return next(i for i, pkg in enumerate(LAYERS.values()) if module.startswith(pkg))


def test_graph_sees_every_module_and_lazy_imports() -> None:
    graph = import_graph()
    assert "pairsift.models.noise.mixture" in graph
    assert "pairsift.benchmarks.quality" in graph
    # run() imports its stages inside the function body: lazy imports must be edges too
    assert "pairsift.pipeline.pass2" in graph["pairsift.pipeline.stages"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layers_point_one_way() -> None:
    wrong = sorted(
        f"{m} -> {e}" for m, edges in import_graph().items() for e in edges if layer(e) > layer(m)
    )
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_find_cycle_catches_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from pairsift.models.noise import mixture", {"pairsift.models.noise.mixture"}),
        ("def f():\n    import pairsift.models.noise.null\n", {"pairsift.models.noise.null"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pairsift.models.pairdata import X\n",
         {"pairsift.models.pairdata"}),
    ],
)
def test_imports_of_reads_every_form(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = module_files()
    found = imports_of("pairsift.transforms.mod", path, modules)
    assert expected <= found
    assert found <= expected | {"pairsift.models", "pairsift.models.noise"}
