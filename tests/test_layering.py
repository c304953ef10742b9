"""The import graph of detbench: no circles, and no import from a lower layer to a higher one.

Layers, lowest first (a module may import its own layer and the ones below):

0. the ground floor: the modules directly in ``detbench/`` (errors, config, paths, registry, metrics, ...);
1. ``detbench.data``; 2. ``detbench.models``; 3. ``detbench.kit``;
4. the plugins: ``detbench.detectors`` and ``detbench.datasets`` (the top-level ``detectors/`` and ``datasets/``);
5. ``detbench.engine``; 6. ``detbench.results`` and ``detbench.perf`` (neither imports the other);
7. ``detbench.api``, ``detbench.cli``, the package root and ``__main__``.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"detbench": "detbench", "detectors": "detbench.detectors", "datasets": "detbench.datasets"}
LAYERS = {
    "detbench.data": 1,
    "detbench.models": 2,
    "detbench.kit": 3,
    "detbench.detectors": 4,
    "detbench.datasets": 4,
    "detbench.engine": 5,
    "detbench.results": 6,
    "detbench.perf": 6,
    "detbench.api": 7,
    "detbench.cli": 7,
    "detbench.__main__": 7,
    "detbench": 7,  # the package root re-exports the API
}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The detbench modules ``name`` imports (a ``from package import module`` counts as the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH = {name: set(_imports(name, path)) for name, path in MODULES.items()}


def layer(module: str) -> int:
    """The layer of a module: its longest listed prefix, else the ground floor (0)."""
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or (prefix != "detbench" and module.startswith(prefix + ".")):
            return LAYERS[prefix]
    return 0


def _wing(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_graph_covers_the_tree():
    assert {"detbench.engine.runner", "detbench.data.index", "detbench.detectors.mpft"} <= set(MODULES)
    assert "detbench.kit.detector" in GRAPH["detbench.detectors.mpft"]


def test_no_import_goes_up_a_layer():
    upward = sorted(
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(source)
        or (layer(target) == layer(source) == 6 and _wing(target) != _wing(source))
    )
    assert not upward, "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert not _cycles(), _cycles()


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]), ({"a": {"b"}, "b": set()}, [])],
)
def test_the_circle_finder_finds_circles(graph, expected, monkeypatch):
    monkeypatch.setattr(f"{__name__}.GRAPH", graph)
    assert _cycles() == expected


def test_every_package_is_installed():
    """A wheel holds only the packages pyproject.toml lists: every folder with an ``__init__.py`` must be listed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert found == listed
