"""No function in `jobrunner` is longer than 60 lines (the style anchors' limit).

A function that outgrows a screen mixes steps that deserve names; splitting it is what keeps the
commands thin and the reconciler's rooms small. This reads every module with `ast` (nothing is
imported) and measures each function, method and nested function by its body: from its first
statement (the docstring counts) to its last line; the signature and decorators do not count.

`TODAY` lists the functions that were longer when the test was written, with their length then as
a ceiling: they may shrink, never grow, and one that fits in 60 lines fails the test until it is
deleted from the list. New code gets no entry: split the function instead.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "jobrunner"
LIMIT = 60

# (module path under jobrunner/, qualified name) -> body lines when the test was written.
# Not in jobrunner/commands/ or jobrunner/reconcile/: those have none, and must keep it so.
TODAY: dict[tuple[str, str], int] = {
    ("inputs.py", "load_batch_items"): 67,
    ("plan.py", "compute_plan"): 70,
    ("plan.py", "_plan_job"): 79,
    ("providers/bodies.py", "LogTrimmer.feed"): 62,
    ("render/plan_markdown.py", "render"): 74,
    ("workspace.py", "load_config"): 69,
}


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    assert node.end_lineno is not None
    return node.end_lineno - node.body[0].lineno + 1


def lengths(package: Path = PACKAGE) -> dict[tuple[str, str], int]:
    """(module path, qualified name) -> body lines, for every function in the package."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = path.relative_to(package).as_posix()
        for name, node in _functions(tree):
            found[(module, name)] = body_lines(node)
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    found = lengths()
    assert len(found) > 500  # the walk found the package
    too_long = {key: n for key, n in found.items() if n > LIMIT and n > TODAY.get(key, LIMIT)}
    assert not too_long, f"functions over {LIMIT} lines (split them; TODAY only shrinks):\n" + "\n".join(
        f"  jobrunner/{module}: {name}: {n} lines" + (f" (was {TODAY[key]})" if key in TODAY else "")
        for key, n in sorted(too_long.items()) for module, name in [key])


def test_the_list_of_todays_long_functions_only_shrinks() -> None:
    found = lengths()
    fixed = sorted(key for key in TODAY if found.get(key, 0) <= LIMIT)
    assert not fixed, "now short enough (or gone), delete from TODAY:\n" + "\n".join(f"  {m}: {n}" for m, n in fixed)
    assert not [key for key in TODAY if key[0].startswith(("commands/", "reconcile/"))]


def test_the_measure_counts_the_body_of_nested_functions_and_methods(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "@decorator\n"
        "def outer(\n    a,\n):\n"
        '    """Doc."""\n'
        "    def inner():\n        return 1\n"
        "    return inner\n\n\n"
        "class C:\n    async def method(self):\n        x = 1\n\n        return x\n")
    assert lengths(tmp_path) == {("m.py", "outer"): 4, ("m.py", "outer.inner"): 1, ("m.py", "C.method"): 3}


def test_the_executor_only_routes() -> None:
    """The executor routes changes to the reconciler's rooms; the work lives in the rooms, so the
    router stays under 300 lines (issue 11's bound for the once 650-line class)."""
    lines = (PACKAGE / "reconcile" / "executor.py").read_text(encoding="utf-8").count("\n")
    assert lines < 300, f"reconcile/executor.py has {lines} lines: move the work into a room"
