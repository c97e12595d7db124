"""JSON paths (`$.spec.input.order`) and finding values by them inside plain data.

Diagnostics, positions and references all name a place in a manifest by JSON path; this module
spells those paths one way and walks nested dicts and lists for the values a check looks for.
Pure and free of PyYAML, so modules that only walk data do not pay for the YAML loader.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def child_path(parent: str, key: str | int) -> str:
    """JSON path of a child: `$.a.b`, `$.a[3]`, `$.a['odd key']`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _BARE_KEY.match(key):
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def nearest(table: Mapping[str, T], json_path: str) -> T | None:
    """The entry for `json_path` in `table`, else for its nearest ancestor path (None if none).

    Used to point at the best known `file:line:col` for a path that has no position of its own.
    """
    path = json_path
    while path:
        found = table.get(path)
        if found is not None:
            return found
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            break
        path = path[:cut]
    return None


def find_values(value: Any, path: str, match: Callable[[Any], bool]) -> list[tuple[str, Any]]:
    """(json_path, found) for every value below `value` (itself included) for which `match` is true.

    A match is not searched further. Paths are only built for matches: large batch inputs are
    walked on every plan, and almost nothing in them matches.
    """
    hits: list[tuple[tuple[str | int, ...], Any]] = []
    _visit(value, match, [], hits)
    out = []
    for parts, found in hits:
        p = path
        for part in parts:
            p = child_path(p, part)
        out.append((p, found))
    return out


def _visit(v: Any, match: Callable[[Any], bool], trail: list[str | int],
           hits: list[tuple[tuple[str | int, ...], Any]]) -> None:
    """find_values' walk. A module function, not a closure that calls itself: such a closure is a
    reference cycle, left for the cyclic collector once per call (100,000 per batch of that size)."""
    if match(v):
        hits.append((tuple(trail), v))
    elif isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) or match(x):
                trail.append(str(k))
                _visit(x, match, trail, hits)
                trail.pop()
    elif isinstance(v, list):
        for i, x in enumerate(v):
            if isinstance(x, (dict, list)) or match(x):
                trail.append(i)
                _visit(x, match, trail, hits)
                trail.pop()


__all__ = ["child_path", "find_values", "nearest"]
