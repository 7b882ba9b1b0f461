"""The layers hold: no import cycle between the platform's packages, the API reaches calls only
through ``calls.service``, and nothing under ``calls/`` reaches the platform through an object.

Imports are read from the source (every one: under ``TYPE_CHECKING`` and inside functions too),
so a cycle hidden from the interpreter still counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "voipbin"
# The composition root builds every service and hands each its context.
COMPOSITION_ROOT = "voipbin.runtime"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" not in path.parts:
            yield module_name(path), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> set[str]:
    """Every voipbin module a source imports (``from a import b`` counts a.b when that is a module)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("voipbin"):
            names.add(str(node.module))
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("voipbin"))
    return names


MODULES = dict(sources())
IMPORTS = {name: {m for m in imported(tree) if m in MODULES} for name, tree in MODULES.items()}


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in IMPORTS.items():
        source = package_of(module)
        graph.setdefault(source, set()).update(package_of(t) for t in targets if package_of(t) != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path (first node repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            if (cycle := visit(target, [*path, node])) is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start, [])) is not None:
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_packages() -> None:
    cycle = find_cycle(package_graph())

    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("voipbin.api")))
def test_the_api_reaches_calls_only_through_its_service(module: str) -> None:
    internals = {t for t in IMPORTS[module] if t.startswith("voipbin.calls") and t != "voipbin.calls.service"}

    assert not internals, f"{module} imports {sorted(internals)}; use voipbin.calls.service"


def test_only_the_composition_root_builds_calls_from_its_parts() -> None:
    """Feature packages (conferences, queues, AI, messaging) use calls through its front door too."""
    reaching_in = {
        module: sorted(t for t in targets if t.startswith("voipbin.calls.") and t != "voipbin.calls.service")
        for module, targets in IMPORTS.items()
        if not module.startswith("voipbin.calls") and module != COMPOSITION_ROOT
    }

    assert {m: t for m, t in reaching_in.items() if t} == {}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("voipbin.calls")))
def test_calls_reach_the_platform_only_through_their_context(module: str) -> None:
    tree = MODULES[module]
    back_pointers = sorted({
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("platform", "manager")
    })

    assert COMPOSITION_ROOT not in IMPORTS[module], f"{module} imports the running platform"
    assert not back_pointers, f"{module} reaches through {back_pointers}"
