"""Where a workspace is, what its config says, and which files in it are manifests.

A workspace is the current directory, or the nearest parent holding `jobrunner.yaml`. Its config
names the state backend, provider endpoints, rate limits and default parallelism; everything has a
default so a workspace without a config file works. Manifest discovery is cheap on purpose: a
directory scan reads each `*.yaml`/`*.yml` file's bytes once and keeps only those that mention
`apiVersion: jobrunner/v1`, so unrelated YAML (CI files, Kubernetes, Helm values) is ignored.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobrunner.errors import ConfigError, UsageError

CONFIG_FILE = "jobrunner.yaml"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# Directories never scanned for manifests: VCS data, our own state, virtualenvs, caches.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".jobrunner", ".venv", "venv", "node_modules", "__pycache__",
                       ".tox", ".mypy_cache", ".pytest_cache", "build", "dist"})

# Any spelling of our apiVersion in block or flow style, quoted or not. False positives (a comment
# mentioning it) only cost a parse; the loader then reports documents that are not ours.
_API_VERSION_RE = re.compile(rb"""apiVersion['"]?\s*:\s*['"]?jobrunner/v1\b""")


@dataclass
class WorkspaceConfig:
    """The parsed `jobrunner.yaml` (every field optional)."""

    state_backend: str = "local"
    state_path: str = ".jobrunner/state.json"
    state_url: str | None = None
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    parallelism: int = 10


def find_workspace(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding jobrunner.yaml, else `start`."""
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return here


_STATE_KEYS = {"backend", "path", "url"}
# `state: {backend, path, url}` and the flat spellings `state_backend`/`state_path`/`state_url`.
_TOP_KEYS = {"state", "state_backend", "state_path", "state_url", "providers", "parallelism"}


def load_config(root: Path) -> WorkspaceConfig:
    """Read `<root>/jobrunner.yaml`; defaults when it does not exist. Bad content is a ConfigError."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return WorkspaceConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{CONFIG_FILE}: not valid UTF-8 text", hint="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{CONFIG_FILE}:{mark.line + 1}:{mark.column + 1}" if mark else CONFIG_FILE
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return WorkspaceConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_FILE}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{CONFIG_FILE}: unknown key(s) {', '.join(unknown)}",
            hint=f"allowed top-level keys: {', '.join(sorted(_TOP_KEYS))}",
        )
    cfg = WorkspaceConfig()
    state = data.get("state") or {}
    if not isinstance(state, dict):
        raise ConfigError(f"{CONFIG_FILE}: `state` must be a mapping (backend, path, url)")
    state = {**state, **{k[len("state_"):]: v for k, v in data.items() if str(k).startswith("state_")}}
    bad = sorted(set(map(str, state)) - _STATE_KEYS)
    if bad:
        raise ConfigError(f"{CONFIG_FILE}: unknown key(s) under state: {', '.join(bad)}",
                          hint="allowed: backend, path, url")
    if "backend" in state:
        cfg.state_backend = _str(state["backend"], "state.backend")
    if "path" in state:
        cfg.state_path = _str(state["path"], "state.path")
    if state.get("url") is not None:
        cfg.state_url = _str(state["url"], "state.url")
    providers = data.get("providers") or {}
    if not isinstance(providers, dict) or not all(isinstance(v, dict) or v is None for v in providers.values()):
        raise ConfigError(f"{CONFIG_FILE}: `providers` must map provider names to mappings")
    cfg.providers = {str(k): dict(v or {}) for k, v in providers.items()}
    if "parallelism" in data:
        par = data["parallelism"]
        if isinstance(par, bool) or not isinstance(par, int) or par < 1:
            raise ConfigError(f"{CONFIG_FILE}: `parallelism` must be a positive integer, got {par!r}")
        cfg.parallelism = par
    return cfg


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{CONFIG_FILE}: `{key}` must be a non-empty string, got {value!r}")
    return value


def carries_our_api_version(path: Path) -> bool:
    """True when the file's bytes mention `apiVersion: jobrunner/v1` (a cheap pre-filter)."""
    try:
        with path.open("rb") as fh:
            return _API_VERSION_RE.search(fh.read()) is not None
    except OSError:
        return True  # let the loader report why it cannot be read


def discover_manifest_files(paths: list[Path], root: Path) -> list[Path]:
    """Manifest files named by `paths` (default: the workspace root), sorted, without duplicates.

    A file named explicitly is always returned (the loader then says what is wrong with it); files
    found by scanning a directory are kept only when they carry our apiVersion.
    """
    found: dict[str, Path] = {}
    for raw in paths or [root]:
        p = raw if raw.is_absolute() else Path.cwd() / raw
        if p.is_file():
            found[str(p.resolve())] = p.resolve()
        elif p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
                for name in filenames:
                    if not name.endswith(MANIFEST_SUFFIXES) or name == CONFIG_FILE:
                        continue
                    fp = Path(dirpath, name)
                    if carries_our_api_version(fp):
                        found[str(fp.resolve())] = fp.resolve()
        else:
            raise UsageError(f"no such file or directory: {raw}", hint="pass manifest files or directories")
    return sorted(found.values())


def display_path(path: Path, root: Path) -> str:
    """A path as users see it in diagnostics and state: workspace-relative, POSIX separators."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(os.path.relpath(path.resolve(), root.resolve()))
    return rel.as_posix()


__all__ = [
    "CONFIG_FILE",
    "WorkspaceConfig",
    "find_workspace",
    "load_config",
    "discover_manifest_files",
    "carries_our_api_version",
    "display_path",
]
