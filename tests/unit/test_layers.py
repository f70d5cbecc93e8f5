"""The import graph of ``gateway/`` points down the request path: the package's structure,
checked from the source (its ``import`` statements, function-local ones included)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

#: Parts used by all that use none of the request path's upper parts.
FOUNDATIONS = ("store", "telemetry", "upstream")
UPPER = ("api", "routing", "admission", "exchange", "surfaces", "console", "cli", "app")


def _part(module: str) -> str:
    """``gateway.store.limits`` → ``store``; ``gateway.errors`` → ``errors``."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def _imports() -> dict[str, set[str]]:
    """Each part of the package → the parts it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = "gateway." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "gateway":
                    names = [f"gateway.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("gateway.") and _part(name) != _part(module):
                    graph[_part(module)].add(_part(name))
    return graph


def test_the_foundations_import_nothing_above_them() -> None:
    graph = _imports()
    for part in FOUNDATIONS:
        assert not graph[part] & set(UPPER), (part, sorted(graph[part] & set(UPPER)))


def test_nothing_imports_the_command_line() -> None:
    users = [part for part, used in _imports().items() if "cli" in used]
    assert users in ([], ["__main__"])  # ``python -m gateway`` runs it


def test_the_parts_import_each_other_without_a_cycle() -> None:
    graph = _imports()
    seen: dict[str, str] = {}

    def visit(part: str, path: list[str]) -> None:
        if seen.get(part) == "done":
            return
        if seen.get(part) == "open":
            pytest.fail("import cycle: " + " -> ".join([*path, part]))
        seen[part] = "open"
        for used in sorted(graph.get(part, ())):
            visit(used, [*path, part])
        seen[part] = "done"

    for part in sorted(graph):
        visit(part, [])
