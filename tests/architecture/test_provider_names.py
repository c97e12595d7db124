"""No provider name outside the providers: the core asks a provider's adapter, never its name.

Adding a provider is one adapter module and one table entry (docs/architecture.md); that stays
true only while no other module compares, builds or imports a specific provider's name. This reads
every module outside `jobrunner.providers` and `jobrunner.local` (and the local platform's gateways,
whose job is that one provider) with `ast` and fails on:

- a string constant that is a provider's name (`providers.names.PROVIDER_NAMES`), or holds one
  as a word (`f"emissary.{x}"`; not `local`, an everyday word); docstrings are prose and do not
  count;
- an import of one provider's adapter or wire client (`jobrunner.providers.adapters.emissary`,
  `jobrunner.providers.replicate`); the adapter table (`jobrunner.providers.adapters`) is the way in.

`ALLOWED` lists the few constants that are the same word but not a provider, or examples shown to
users, each with why.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from jobrunner.providers.names import PROVIDER_NAMES
from tests.architecture.test_layers import LOCAL_GATEWAYS, Module, modules

# A provider name as a word anywhere in a string; "local" is an everyday word, so only the exact
# constant "local" counts for it.
_EVERYDAY = {"local"}
_WORD = re.compile(r"\b(" + "|".join(n for n in PROVIDER_NAMES if n not in _EVERYDAY) + r")\b")
_PROVIDER_MODULE = re.compile(r"^jobrunner\.providers\.(adapters\.)?(" + "|".join(PROVIDER_NAMES) + r")(\.|$)")

# (module, the constant or how it starts) -> why it is allowed.
ALLOWED: dict[tuple[str, str], str] = {
    ("jobrunner.workspace", "local"): "the local-file state backend (`state.backend: local`), not a provider",
    ("jobrunner.estimate.prices", "local"): "the price table's hardware SKU for jobs run on this machine",
    ("jobrunner.commands.validate", "A schema file by name (see --list), e.g. replicate."):
        "--help names a derived schema file as an example",
    ("jobrunner.commands.init", "# jobrunner workspace config."):
        "the jobrunner.yaml that `init` writes shows provider settings as commented examples",
}


def allowed(module: str, value: str) -> bool:
    return any(m == module and (value == v or (v != "local" and value.startswith(v))) for m, v in ALLOWED)


def _checked() -> Iterator[Module]:
    for name, module in sorted(modules().items()):
        if not name.startswith(("jobrunner.providers", "jobrunner.local")) and name not in LOCAL_GATEWAYS:
            yield module


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def names_provider(value: str) -> bool:
    return value in PROVIDER_NAMES or bool(_WORD.search(value))


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def findings(module: Module) -> list[str]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                and names_provider(node.value) and not allowed(module.name, node.value)):
            found.append(f"{module.path.name}:{node.lineno}: {node.value[:80]!r}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend(f"{module.path.name}:{node.lineno}: imports {name}"
                         for name in _imported(node) if _PROVIDER_MODULE.match(name))
    return found


def test_no_module_outside_the_providers_names_one() -> None:
    checked = list(_checked())
    assert len(checked) > 50
    found = {m.name: f for m in checked if (f := findings(m))}
    assert not found, "provider names outside jobrunner.providers (ask the adapter instead):\n" + "\n".join(
        f"  {name}: {line}" for name, lines in found.items() for line in lines)


def test_every_allowed_constant_is_still_there() -> None:
    used: set[tuple[str, str]] = set()
    for module in _checked():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        used.update((m, v) for m, v in ALLOWED if m == module.name
                    and any(names_provider(c) and allowed(m, c) and c.startswith(v) for c in constants))
    assert not set(ALLOWED) - used, "gone, delete from ALLOWED: " + repr(sorted(set(ALLOWED) - used))


def test_the_check_sees_names_in_strings_and_imports(tmp_path) -> None:
    path = tmp_path / "m.py"
    path.write_text('"""Replicate and emissary in prose are fine."""\n'
                    "from jobrunner.providers.adapters.emissary import X\n"
                    "import jobrunner.providers.replicate\n"
                    "from jobrunner.providers.adapters import adapter_for\n"
                    'a = "replicate"\nb = f"emissary.{a}"\nc = "local"\nd = "local file"\ne = "replicated"\n')
    got = sorted(findings(Module("jobrunner.m", path, is_package=False)))
    assert got == ["m.py:2: imports jobrunner.providers.adapters.emissary",
                   "m.py:2: imports jobrunner.providers.adapters.emissary.X",
                   "m.py:3: imports jobrunner.providers.replicate",
                   "m.py:5: 'replicate'", "m.py:6: 'emissary.'", "m.py:7: 'local'"]
    assert {"replicate", "emissary", "local"} <= set(PROVIDER_NAMES)
