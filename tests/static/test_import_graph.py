"""The engine's import graph: no cycle, and no arrow from a lower layer to a higher one.

The graph is read from the source with :mod:`ast` (every ``import``, also inside functions and under
``TYPE_CHECKING``), so it is the graph a reader sees.  The layers, lowest first (docs/decisions.md,
2026-12-07 "the engine's layout"):

    core < items < salesforce, store < inbound, fullcopy, changes, write-back < dispatch < ops < wiring

A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ENGINE = Path(__file__).resolve().parents[2] / "layers" / "engine"
PACKAGE = "sfsync"

#: Layer of each top-level part of the engine package (a module or a sub-package), lowest first.
LAYERS: dict[str, int] = {
    "sfsync": 0,  # the package itself (version only)
    "core": 0,
    "items": 1,
    "salesforce": 2,
    "store": 2,
    "inbound": 3,
    "fullcopy": 3,
    "changes": 3,
    "writeback": 3,  # the staged write-back package (its sweep included)
    "dispatch": 4,
    "ops": 5,
    "wiring": 6,
}

#: Known exceptions, each named with the reason it is still here (none: keep it that way).
ALLOWED_CYCLES: frozenset[frozenset[str]] = frozenset()
ALLOWED_UPWARD: frozenset[tuple[str, str]] = frozenset()


def engine_modules(root: Path = ENGINE) -> dict[str, Path]:
    """Every module of the engine package by dotted name (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, list[str]]]:
    """(imported module, names taken from it) for one import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base if is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        yield target, [alias.name for alias in node.names]


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the engine modules it imports (``from pkg import mod`` counts as an arrow to ``pkg.mod``)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for target, names in _imported(node, name, path.name == "__init__.py"):
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                hits = subs or ([target] if target in modules else [])
                graph[name].update(hit for hit in hits if hit != name)
    return graph


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else parts[0]
    return LAYERS[top]


def cycles(graph: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
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
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def upward_arrows(graph: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(engine_modules())


def test_given_the_engine_then_every_module_belongs_to_a_layer(graph: dict[str, set[str]]) -> None:
    unplaced = sorted(m for m in graph if (m.split(".")[1] if "." in m else m) not in LAYERS)
    assert unplaced == [], f"place these modules in LAYERS: {unplaced}"


def test_given_the_engine_import_graph_then_it_has_no_cycle(graph: dict[str, set[str]]) -> None:
    found = [sorted(c) for c in cycles(graph) if c not in ALLOWED_CYCLES]
    assert found == [], f"import cycles: {found}"


def test_given_the_engine_import_graph_then_no_arrow_goes_from_a_lower_layer_to_a_higher_one(
    graph: dict[str, set[str]],
) -> None:
    found = [arrow for arrow in upward_arrows(graph) if arrow not in ALLOWED_UPWARD]
    assert found == [], f"imports from a lower layer to a higher one: {found}"


def test_given_the_known_exceptions_then_each_still_exists(graph: dict[str, set[str]]) -> None:
    """An exception that no longer happens is deleted here, so the list never hides a new one."""
    assert {c for c in cycles(graph)} >= set(ALLOWED_CYCLES)
    assert set(upward_arrows(graph)) >= set(ALLOWED_UPWARD)


def test_given_a_graph_with_a_cycle_or_an_upward_arrow_then_the_checks_find_them(tmp_path: Path) -> None:
    """The checks themselves, on a small package written here."""
    package = tmp_path / PACKAGE
    for folder in ("core", "store", "inbound"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "clock.py").write_text("from sfsync.store import records\n")  # upward
    (package / "store" / "records.py").write_text("from sfsync.core.clock import now\nfrom . import state\n")
    (package / "store" / "state.py").write_text("def f():\n    from sfsync.store.records import x\n")  # cycle
    (package / "inbound" / "cycle.py").write_text("from sfsync.store.state import f\n")  # downward: fine
    found = import_graph(engine_modules(tmp_path))
    assert cycles(found) == [frozenset({"sfsync.core.clock", "sfsync.store.records", "sfsync.store.state"})]
    assert upward_arrows(found) == [("sfsync.core.clock", "sfsync.store.records")]


def test_given_the_unit_tier_then_no_file_uses_moto_or_an_aws_client() -> None:
    """``tests/unit`` is pure logic (pyproject's ``unit`` marker: no I/O); moto-backed tests live in functional."""
    offenders = []
    for path in sorted((ENGINE.parents[1] / "tests" / "unit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] == "moto"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "moto":
                names = [str(node.module)]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "boto3":
                names = [f"boto3.{node.attr}"] if node.attr in ("client", "resource", "Session") else []
            offenders += [f"{path.name}: {name}" for name in names]
    assert offenders == []
