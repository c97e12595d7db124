"""The local platform's layout, read from its imports (AST, every import including those inside
functions): the core names neither wire, the wires do not import each other, both wires have the
same modules, engines know no wire, and no import cycle exists."""
from __future__ import annotations

import ast
from pathlib import Path

import jobrunner.local

ROOT = Path(jobrunner.local.__file__).parent
PACKAGE = "jobrunner.local"
WIRES = ("replicate", "emissary")
# The composition root and what runs it: `app` alone builds both wires (with `gate`, which picks
# one per request); `server` serves the app, `autostart` starts a server.
COMPOSITION = {"app", "gate", "server", "autostart"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imports(path: Path) -> set[str]:
    """The jobrunner.local modules `path` imports (a `from pkg import name` counts as pkg.name when
    that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith(PACKAGE + ".") and m in MODULES}


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _area(module: str) -> str:
    """`replicate`, `emissary`, `engines`, `composition` or `core`."""
    first = module.removeprefix(PACKAGE + ".").split(".")[0]
    if first in (*WIRES, "engines"):
        return first
    return "composition" if first in COMPOSITION else "core"


def test_the_core_names_neither_wire_nor_the_composition_root() -> None:
    leaks = {
        m: sorted(i for i in deps if _area(i) in (*WIRES, "composition"))
        for m, deps in GRAPH.items() if _area(m) == "core"
    }
    assert {m: d for m, d in leaks.items() if d} == {}


def test_the_wires_do_not_import_each_other_and_engines_know_no_wire() -> None:
    crossing = {
        m: sorted(i for i in deps if _area(i) in WIRES and _area(i) != _area(m))
        for m, deps in GRAPH.items() if _area(m) in (*WIRES, "engines")
    }
    assert {m: d for m, d in crossing.items() if d} == {}


def test_both_wires_have_the_same_modules() -> None:
    layouts = {w: sorted(p.name for p in (ROOT / w).glob("*.py")) for w in WIRES}
    assert layouts["replicate"] == layouts["emissary"]
    assert {"routes.py", "serializers.py", "service.py", "store.py"} <= set(layouts["replicate"])


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(GRAPH[m]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep] if dep in path else [m, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_graph_is_read_at_all() -> None:
    # Guards the tests above against passing on an empty graph (a moved package, a parse change).
    assert len(MODULES) > 25
    assert f"{PACKAGE}.replicate.service" in GRAPH[f"{PACKAGE}.replicate.routes"]
    assert f"{PACKAGE}.platform" in GRAPH[f"{PACKAGE}.emissary.service"]
