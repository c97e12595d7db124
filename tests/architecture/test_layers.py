"""The import graph of `jobrunner` keeps its layers: pure core <- I/O <- commands, `jobrunner.local`
behind two gateways, and no cycles.

docs/architecture.md describes the layers; this test is what keeps them true. It reads every
module of the package with `ast` (nothing is imported, so it runs in well under a second) and
collects every `import` and `from ... import`, at module level, inside functions and under
`TYPE_CHECKING` alike: an import hidden in a function is still a dependency, and the cycles it
hides are the ones that make a module impossible to move.

The contracts:

1. **Layers.** Every module belongs to exactly one layer (`LAYERS`, most specific prefix wins), and
   a module imports only from its own layer or lower ones.
2. **The local platform is private.** Outside `jobrunner.local`, only its gateways
   (`LOCAL_GATEWAYS`: the `local` provider's client and `jobrunner serve`) import it.
3. **No cycles** among modules.

Each contract has an allowlist of exact (importer, imported) pairs that may break it. All three are
empty; a new entry needs a reason written beside it, and a pair that no longer breaks its contract
fails the test until it is deleted from the list.
"""
from __future__ import annotations

import ast
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "jobrunner"


class Layer(enum.IntEnum):
    """Lower layers never import higher ones."""

    CORE = 0  # pure: manifests -> resources -> desired jobs -> plan, the contracts, the renderers
    IO = 1  # providers, state stores, the reconciler, the local platform
    SHELL = 2  # the click CLI and its commands


# Module-name prefixes per layer; the longest matching prefix decides, so the pure contract modules
# that live in I/O packages (`providers.base`, `state.model`, `state.identity`) are core.
LAYERS: dict[str, Layer] = {
    "jobrunner": Layer.CORE,  # the package itself and the top-level core modules
    "jobrunner.providers.base": Layer.CORE,  # RemoteJob, CreateRequest and the statuses
    "jobrunner.providers.adapter": Layer.CORE,  # what a provider is to the core: pure data and functions
    "jobrunner.providers.adapters": Layer.CORE,  # the adapter table, one pure module per provider (+ data)
    "jobrunner.providers.names": Layer.CORE,  # the closed set of provider names
    "jobrunner.providers.limits": Layer.CORE,  # request classes and documented rate limits (data)
    "jobrunner.providers.logmarker": Layer.CORE,  # the truncated-log marker line bodies write, logs read
    "jobrunner.state.model": Layer.CORE,  # StateDoc and AddressState
    "jobrunner.state.identity": Layer.CORE,  # the workspace-identity check (pure, stores call it)
    # The apply report's types (OutcomeKind, Outcome, Unfinished, ApplyReport): pure data the
    # executor fills and exitcodes and render.report read.
    "jobrunner.reconcile.report": Layer.CORE,
    "jobrunner.crashpoints": Layer.IO,
    "jobrunner.discover": Layer.IO,
    "jobrunner.local": Layer.IO,
    "jobrunner.providers": Layer.IO,
    "jobrunner.reconcile": Layer.IO,
    "jobrunner.refresh": Layer.IO,
    "jobrunner.saved_plan": Layer.IO,
    "jobrunner.state": Layer.IO,
    "jobrunner.__main__": Layer.SHELL,
    "jobrunner.cli": Layer.SHELL,
    "jobrunner.commands": Layer.SHELL,
}

LOCAL = "jobrunner.local"
# The local provider's wire client (it starts the platform on first use) and `jobrunner serve`. The
# local adapter is not one: the built-in models it knows offline are core data
# (`providers.adapters.local_builtins`) that the platform serves.
LOCAL_GATEWAYS = frozenset({"jobrunner.providers.local", "jobrunner.commands.serve"})

# Allowlists of pairs that break a contract. They are empty and should stay so: fix an upward import
# at its root (move the pure helper or data down to the layer that owns it, pass the value in, or
# invert the dependency). A new entry needs a comment saying why it cannot be fixed that way, and a
# pair that stops breaking its contract fails `test_allowlists_only_shrink` until it is deleted.
ALLOWED_UPWARD: frozenset[tuple[str, str]] = frozenset()

# Imports of `jobrunner.local` from outside it, other than by its gateways.
ALLOWED_LOCAL: frozenset[tuple[str, str]] = frozenset()

# Cycles, each broken by the import listed here (an import inside a function that exists only to
# dodge an ImportError at load time is still a cycle).
ALLOWED_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


def _imported_names(module: Module, tree: ast.AST) -> Iterator[str]:
    """Every dotted name `module` imports, relative imports resolved; `from a import b` yields
    `a.b` (which `import_graph` trims to `a` when `b` is not a module)."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """importer -> the jobrunner modules it imports (packages count as their `__init__`)."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for module in mods.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for name in _imported_names(module, tree):
            while name not in mods and "." in name:
                name = name.rpartition(".")[0]
            if name in mods and name != module.name:
                graph[module.name].add(name)
    return graph


def layer_of(module: str) -> Layer:
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return LAYERS[max(matches, key=len)]


def edges(graph: dict[str, set[str]]) -> Iterable[tuple[str, str]]:
    return ((a, b) for a in sorted(graph) for b in sorted(graph[a]))


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in edges(graph) if layer_of(b) > layer_of(a)}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def local_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in edges(graph)
            if _inside(b, LOCAL) and not _inside(a, LOCAL) and a not in LOCAL_GATEWAYS}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
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
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def without(graph: dict[str, set[str]], dropped: frozenset[tuple[str, str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in dropped} for a, targets in graph.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _listing(pairs: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"  {a} -> {b}" for a, b in sorted(pairs))


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 50  # the walk found the package, not an empty directory
    for module in graph:
        layer_of(module)


def test_no_import_points_up_a_layer(graph: dict[str, set[str]]) -> None:
    new = upward_imports(graph) - ALLOWED_UPWARD
    assert not new, "imports from a lower layer into a higher one:\n" + _listing(new)


def test_only_the_gateways_import_the_local_platform(graph: dict[str, set[str]]) -> None:
    new = local_imports(graph) - ALLOWED_LOCAL
    assert not new, ("jobrunner.local imported outside the local provider and `serve`:\n" + _listing(new))


def test_no_cycles(graph: dict[str, set[str]]) -> None:
    remaining = cycles(without(graph, ALLOWED_CYCLE_EDGES))
    assert not remaining, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in remaining)


def test_allowlists_only_shrink(graph: dict[str, set[str]]) -> None:
    """Every allowlisted pair still breaks its contract; a fixed one must leave its list."""
    in_cycle = {(a, b) for component in cycles(graph) for a, b in edges(graph)
                if a in component and b in component}
    stale = {
        "ALLOWED_UPWARD": ALLOWED_UPWARD - upward_imports(graph),
        "ALLOWED_LOCAL": ALLOWED_LOCAL - local_imports(graph),
        "ALLOWED_CYCLE_EDGES": ALLOWED_CYCLE_EDGES - in_cycle,
    }
    stale = {name: pairs for name, pairs in stale.items() if pairs}
    assert not stale, "fixed, now delete from the allowlist:\n" + "\n".join(
        f"{name}:\n{_listing(pairs)}" for name, pairs in stale.items())


# The checks themselves, on small graphs, so a bug in them cannot pass vacuously.

def test_cycles_finds_a_hidden_cycle_and_only_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles(without(graph, frozenset({("c", "a")}))) == []


def test_relative_and_function_level_imports_are_edges(tmp_path: Path) -> None:
    source = "def f():\n    from . import plan\n    from ..reconcile import executor\n"
    tree = ast.parse(source)
    module = Module("jobrunner.render.report", tmp_path / "report.py", is_package=False)
    assert set(_imported_names(module, tree)) == {"jobrunner.render.plan", "jobrunner.reconcile.executor"}


def test_layer_prefixes_pick_the_most_specific() -> None:
    assert layer_of("jobrunner.providers.base") is Layer.CORE
    assert layer_of("jobrunner.providers.http") is Layer.IO
    assert layer_of("jobrunner.commands.serve") is Layer.SHELL
    assert layer_of("jobrunner.plan") is Layer.CORE
