"""`${Kind.name.output.field}` references between resources: finding, resolving and ordering them.

A reference makes one resource depend on another's outputs (a batch that runs the version a
training produced). References are plain strings in the spec, so the schemas accept them wherever
a string is allowed; this module finds them, substitutes known outputs, and orders resources so
that every dependency comes first. A string that is exactly one reference is replaced by the
output value itself (any JSON type); a reference inside a longer string is interpolated as text.
Write `$${` for a literal `${`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobrunner.fingerprint import interpolated_json
from jobrunner.jsonpaths import find_values
from jobrunner.providers.adapters import ADAPTERS
from jobrunner.resources import KINDS, Resource

# One well-formed reference. Names are DNS labels (metadata.name), fields are identifiers.
REF_RE = re.compile(
    r"(?<!\$)\$\{(?P<kind>[A-Za-z][A-Za-z0-9]*)\.(?P<name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
    r"\.output\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)\}"
)
# Anything that looks like an attempt at a reference (for "malformed reference" errors).
ANY_REF_RE = re.compile(r"(?<!\$)\$\{[^}]*\}?")
# JSON Schema pattern for "a string that is exactly one reference" (used by the derived schemas).
REF_PATTERN = r"^\$\{[A-Za-z][A-Za-z0-9]*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.output\.[A-Za-z_][A-Za-z0-9_]*\}$"

# Outputs each kind (and provider) records after a successful run; references to other fields are
# validation errors. Each provider's adapter declares its own (`ProviderAdapter.output_fields`);
# this is the kind -> provider -> fields view plan, apply and docs read.
KNOWN_OUTPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    kind: {name: adapter.output_fields[kind] for name, adapter in ADAPTERS.items() if kind in adapter.output_fields}
    for kind in KINDS
}


def known_outputs(kind: str, provider: str) -> tuple[str, ...]:
    return KNOWN_OUTPUTS.get(kind, {}).get(provider, ())


def resource_outputs(resource: Resource) -> tuple[str, ...]:
    """The outputs this resource will have once it succeeded: its kind's and provider's, except a
    batch's `output_file` when the spec sets none (a reference to it could never resolve)."""
    fields = known_outputs(resource.kind, resource.provider)
    if resource.kind == "PredictionBatch" and not resource.spec.get("output_file"):
        fields = tuple(f for f in fields if f != "output_file")
    return fields


def missing_outputs_text(missing: tuple[tuple[str, str], ...]) -> str:
    """Why a job whose upstream succeeded cannot run: which output is missing, and what to do.

    `missing` is (upstream address, field) per reference that cannot resolve.
    """
    parts = []
    for address in sorted({a for a, _ in missing}):
        fields = ", ".join(f"`{f}`" for a, f in sorted(missing) if a == address)
        parts.append(f"{address} succeeded without output {fields}")
    upstreams = sorted({a for a, _ in missing})
    rerun = "jobrunner apply " + " ".join(f"--replace {a}" for a in upstreams)
    return ("; ".join(parts) + f": check it on the provider, then run it again (`{rerun}`), "
            "or reference an output it has (`jobrunner outputs` lists them)")


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    field: str
    json_path: str  # where the referencing string is, e.g. "$.spec.version"

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def text(self) -> str:
        return f"${{{self.kind}.{self.name}.output.{self.field}}}"


def _walk_strings(value: Any, path: str, needle: str = "${") -> list[tuple[str, str]]:
    """(json_path, text) of every string containing `needle`."""
    return find_values(value, path, lambda v: isinstance(v, str) and needle in v)


def find_refs(value: Any, path: str = "$") -> list[Ref]:
    """Every well-formed reference in `value` (any nesting), in document order."""
    refs: list[Ref] = []
    for p, s in _walk_strings(value, path):
        if "${" not in s:
            continue
        for m in REF_RE.finditer(s):
            refs.append(Ref(m["kind"], m["name"], m["field"], p))
    return refs


def find_malformed(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """(json_path, text) of every `${...}` that is not a well-formed reference."""
    bad: list[tuple[str, str]] = []
    for p, s in _walk_strings(value, path):
        if "${" not in s:
            continue
        for m in ANY_REF_RE.finditer(s):
            if not REF_RE.fullmatch(m.group(0)):
                bad.append((p, m.group(0)))
    return bad


def is_reference(value: Any) -> bool:
    """True when `value` is a string that is exactly one reference."""
    return isinstance(value, str) and REF_RE.fullmatch(value) is not None


_MISSING = object()


def resolve_refs(value: Any, outputs: Mapping[str, Mapping[str, Any]]) -> tuple[Any, bool]:
    """Substitute known outputs into `value`; `outputs` maps `Kind/name` to that resource's outputs.

    Returns (new value, unknown). `unknown` is True when some referenced output is not known yet;
    such references are left in place so plans can show them as "known after apply".
    """
    unknown = False

    def lookup(m: re.Match[str]) -> Any:
        nonlocal unknown
        got = outputs.get(f"{m['kind']}/{m['name']}", {}).get(m["field"], _MISSING)
        if got is _MISSING or got is None:
            unknown = True
            return _MISSING
        return got

    def sub(v: Any) -> Any:
        if isinstance(v, str):
            if "${" not in v:
                return v.replace("$${", "${") if "$${" in v else v
            whole = REF_RE.fullmatch(v)
            if whole:
                got = lookup(whole)
                return v if got is _MISSING else got

            def repl(m: re.Match[str]) -> str:
                got = lookup(m)
                if got is _MISSING:
                    return m.group(0)
                return got if isinstance(got, str) else interpolated_json(got)

            out = REF_RE.sub(repl, v)
            return out if unknown else out.replace("$${", "${")
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [sub(x) for x in v]
        return v

    return sub(value), unknown


def dependencies(resource: Resource) -> list[str]:
    """Addresses `resource` refers to, sorted, without itself."""
    return sorted({r.address for r in find_refs(resource.spec, "$.spec")} - {resource.address})


def find_cycles(resources: list[Resource], refs: dict[str, list[Ref]] | None = None) -> list[list[str]]:
    """Each reference cycle once, as [a, b, ..., a], among known resources (sorted, deterministic).

    `refs` (address -> find_refs of its spec) may be passed in when the caller has it already.
    """
    if refs is None:
        refs = {r.address: find_refs(r.spec, "$.spec") for r in resources}
    known = {r.address for r in resources}
    graph = {a: sorted({x.address for x in refs.get(a, [])} & known - {a}) for a in known}
    cycles: list[list[str]] = [[a, a] for a in sorted(known) if any(x.address == a for x in refs.get(a, []))]
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 0 unvisited, 1 on stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt, 0) == 0:
                visit(nxt)
            elif state.get(nxt) == 1:
                cyc = stack[stack.index(nxt):] + [nxt]
                key = frozenset(cyc)
                if key not in seen_sets:
                    seen_sets.add(key)
                    cycles.append(cyc)
        stack.pop()
        state[node] = 2

    for addr in sorted(graph):
        if state.get(addr, 0) == 0:
            visit(addr)
    return cycles


def dependency_order(resources: list[Resource]) -> list[str]:
    """Addresses in an order where every resource comes after the ones it references.

    Ties are broken by address so the order is stable. Raises ManifestError on a cycle (validation
    reports cycles first, so callers that validated never see it).
    """
    from jobrunner.errors import Diagnostic, ManifestError

    by_addr = {r.address: r for r in resources}
    deps = {a: {d for d in dependencies(r) if d in by_addr} for a, r in by_addr.items()}
    order: list[str] = []
    ready = sorted(a for a, d in deps.items() if not d)
    remaining = {a: set(d) for a, d in deps.items() if d}
    while ready:
        a = ready.pop(0)
        order.append(a)
        newly = []
        for b, d in list(remaining.items()):
            d.discard(a)
            if not d:
                newly.append(b)
                del remaining[b]
        ready = sorted(ready + newly)
    if remaining:
        cyc = find_cycles(resources)
        first = by_addr[sorted(remaining)[0]]
        text = " -> ".join(cyc[0]) if cyc else ", ".join(sorted(remaining))
        raise ManifestError([Diagnostic("error", first.file, first.line, first.column,
                                        f"reference cycle: {text}", first.address, "$.spec")])
    return order


__all__ = [
    "REF_RE",
    "REF_PATTERN",
    "KNOWN_OUTPUTS",
    "known_outputs",
    "resource_outputs",
    "missing_outputs_text",
    "Ref",
    "find_refs",
    "find_malformed",
    "is_reference",
    "resolve_refs",
    "dependencies",
    "find_cycles",
    "dependency_order",
]
