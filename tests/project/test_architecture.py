"""The layers are real: an import graph built from the source (TYPE_CHECKING and in-function imports
included) has no cycle and no import from a lower layer into a higher one, and the Ansible collection
uses the public API only."""

from __future__ import annotations

import ast
from pathlib import Path

import reconciler

from ..conftest import ROOT

# lower to higher; a module may import its own layer and those below it
LAYERS = ("base", "read", "decide", "disk", "api", "render", "reconciler", "cli")
TOP_LEVEL = {"reconciler": "reconciler", "reconciler.demo": "cli"}  # the public API, and the demo store builder


def module_name(package_root: Path, path: Path) -> str:
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package_root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from every import statement in its source."""
    files = {module_name(package_root, p): p for p in sorted(package_root.rglob("*.py*")) if p.suffix in (".py", ".pyi")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.stem == "__init__"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            found.update(t for t in targets if t in files and t != name)
        graph[name] = found
    return graph


def layer_of(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return module.split(".")[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
        for m, targets in graph.items()
        for t in targets
        if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(m))
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle_and_no_upward_import() -> None:
    graph = import_graph(ROOT / "reconciler")
    assert set(LAYERS) - {"reconciler"} <= {layer_of(m) for m in graph}, "a layer's folder is missing"
    assert all(layer_of(m) in LAYERS for m in graph), sorted(m for m in graph if layer_of(m) not in LAYERS)
    assert cycles(graph) == []
    assert upward_imports(graph) == []


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The graph test can fail: a planted cycle (TYPE_CHECKING and in-function imports) and a read module
    importing a mutating one are both found."""
    package = tmp_path / "reconciler"
    for folder in ("base", "read", "disk"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "base" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n")
    (package / "base" / "b.py").write_text("def f():\n    from .a import x\n")
    (package / "read" / "scan.py").write_text("from ..disk import moves\nfrom ..base.a import y\n")
    (package / "disk" / "moves.py").write_text("import os\n")
    graph = import_graph(package)
    assert graph["reconciler.read.scan"] == {"reconciler.disk.moves", "reconciler.base.a"}
    assert cycles(graph) == [["reconciler.base.a", "reconciler.base.b"]]
    assert upward_imports(graph) == ["reconciler.read.scan (read) imports reconciler.disk.moves (disk)"]


def test_the_ansible_collection_uses_only_the_public_api() -> None:
    """Nothing under ansible/ imports a ``reconciler.<module>``; every name it takes is exported."""
    used = []
    for path in sorted((ROOT / "ansible").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                inner = [a.name for a in node.names if a.name.startswith("reconciler.")]
                assert not inner, f"{path.relative_to(ROOT)}:{node.lineno} imports {inner}"
                used += [a.name for a in node.names if a.name == "reconciler"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "reconciler":
                assert node.module == "reconciler", f"{path.relative_to(ROOT)}:{node.lineno} imports from {node.module}"
                missing = [a.name for a in node.names if a.name not in reconciler.__all__]
                assert not missing, f"{path.relative_to(ROOT)}:{node.lineno}: {missing} not exported"
                used += [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("api", "reconciler"):
                assert node.attr in reconciler.__all__, (
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr} is not exported"
                )
    assert {"open_session", "parse_manifest", "safe"} <= set(used) | {"reconciler"}, used
