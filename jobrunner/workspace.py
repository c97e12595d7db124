"""Where a workspace is, what its config says, and which files in it are manifests.

The same manifests must map to the same state from any directory inside a workspace, or a run from
a sub-directory would plan creates for jobs that already ran. So the workspace root is found by
walking up from the current directory (`locate_workspace`):

1. the nearest directory holding `jobrunner.yaml` (written by `jobrunner init`);
2. else the nearest directory holding default local state (`.jobrunner/state.json`), so a
   workspace first used without a config (the README's one-step apply) is found again from below;
3. else the current directory itself (a brand-new workspace; nothing is written there unless it
   holds manifests, see `reconcile.planning.require_manifests`), unless a workspace is marked at
   or above the manifests a command names, or they lie elsewhere: then theirs
   (`find_workspace_for`). A command never plans one workspace's manifests against another's
   state: that would create all their jobs again.

Its config names the state backend, provider endpoints, rate limits and default parallelism;
everything has a default so a workspace without a config file works. Manifest discovery is cheap
on purpose: a directory scan reads each `*.yaml`/`*.yml` file's bytes once and keeps only those
that mention a jobrunner `apiVersion`, so unrelated YAML (CI files, Kubernetes, Helm values) is
ignored. Any version and spelling counts (`jobrunner/v2`, `jobrunner/V1`, a missing colon): a
file meant as a manifest but written wrong must be read and reported, never skipped in silence.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobrunner.errors import ConfigError, UsageError

CONFIG_FILE = "jobrunner.yaml"
# Names a config is easily given by mistake. Not read, such a file would leave the workspace with
# default state and providers: a different state file, where every job looks new.
MISNAMED_CONFIGS = ("jobrunner.yml", ".jobrunner.yaml", ".jobrunner.yml", "Jobrunner.yaml", "jobrunner.YAML")
# A directory holding this file is skipped by directory scans (unless named on the command line),
# e.g. a test corpus of deliberately broken manifests.
IGNORE_MARKER = ".jobrunnerignore"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# Directories never scanned for manifests: VCS data, our own state, virtualenvs, caches.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".jobrunner", ".venv", "venv", "node_modules", "__pycache__",
                       ".tox", ".mypy_cache", ".pytest_cache", "build", "dist"})

# Any spelling of a jobrunner apiVersion in block or flow style, quoted or not, of any version or
# case, with the colon or not (`apiVersion jobrunner/v1`): a typo in that line must make the file an
# error, not invisible. False positives (a comment mentioning it) only cost a parse; the validator
# then reports documents that are not ours.
_API_VERSION_RE = re.compile(rb"""api[_-]?version['"]?[ \t]*[:=]?[ \t]*['"]?jobrunner/""", re.IGNORECASE)
# Default local state, whose presence marks a workspace root that has no jobrunner.yaml.
DEFAULT_STATE_PATH = ".jobrunner/state.json"

WorkspaceSource = Literal["config", "state", "cwd"]
# The state backend that keeps state in a file of the workspace (`state.backend` in jobrunner.yaml,
# `--to`/`--from` of `state migrate`). A state store, not the `local` provider, though both are
# spelled "local".
LOCAL_STATE_BACKEND = "local"


@dataclass
class WorkspaceConfig:
    """The parsed `jobrunner.yaml` (every field optional)."""

    state_backend: str = LOCAL_STATE_BACKEND
    state_path: str = DEFAULT_STATE_PATH
    state_url: str | None = None
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    parallelism: int = 10
    # `workspace: {id: ...}`: names this workspace in the state it writes (jobrunner.state.identity).
    workspace_id: str | None = None
    # `prices: {sku: usd_per_second}` over the shipped table (jobrunner.estimate.prices).
    prices: dict[str, float] = field(default_factory=dict)
    # `policy: {max_cost_per_apply, max_creates_per_apply}` (jobrunner.estimate.policy); None = no limit.
    max_cost_per_apply: float | None = None
    max_creates_per_apply: int | None = None


def find_workspace(start: Path | None = None) -> Path:
    """The workspace root for `start` (default: cwd); see `locate_workspace`."""
    return locate_workspace(start)[0]


def locate_workspace(start: Path | None = None) -> tuple[Path, WorkspaceSource]:
    """The workspace root for `start` (default: cwd) and what marked it (module docstring).

    A `jobrunner.yaml` anywhere above wins over nearer default state: a config is the user's
    explicit statement of the root, state below it can only be left over from before it existed.
    """
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    chain = (here, *here.parents)
    for candidate in chain:
        if (candidate / CONFIG_FILE).is_file():
            return candidate, "config"
        _refuse_misnamed_config(candidate)
    for candidate in chain:
        if (candidate / DEFAULT_STATE_PATH).is_file():
            return candidate, "state"
    return here, "cwd"


def _refuse_misnamed_config(directory: Path) -> None:
    """A config under a near-miss name (and no `jobrunner.yaml` beside it) is an error, not ignored."""
    wrong = next((directory / name for name in MISNAMED_CONFIGS if (directory / name).is_file()), None)
    if wrong is not None:
        raise ConfigError(f"{wrong}: jobrunner reads its workspace config only from {CONFIG_FILE}; this file is "
                          f"not read, so the workspace would use default state and providers",
                          hint=f"rename it: mv {wrong} {directory / CONFIG_FILE}")


def find_workspace_for(paths: list[Path] | tuple[Path, ...], start: Path | None = None) -> Path:
    """The workspace root for a command run in `start` (default: cwd) on manifest `paths`.

    The current directory decides when it is in a workspace. When it is not (nothing marks one
    at or above it), the workspace is the one marked at or above the first path that has one,
    even below the current directory, else the current directory if every path is below it, else
    the first path's directory: `cd /tmp && jobrunner apply ~/proj/specs` (or `/tmp/proj/specs`)
    uses proj's state (or starts it beside the manifests), never /tmp's.

    A named path inside a different marked workspace than the one chosen is a UsageError: planned
    against another workspace's state, every job of it would look new and be created again.
    """
    here, how = locate_workspace(start)
    if not paths:
        return here
    absolute = [(p if p.is_absolute() else here / p).resolve() for p in paths]
    marked = [(p, *locate_workspace(p)) for p in absolute]
    if how == "cwd":
        here = _unmarked_cwd_root(here, absolute, [(root, m) for _, root, m in marked])
    for path, root, mark in marked:
        if mark != "cwd" and root != here:
            raise _foreign_workspace(path, root, here, start)
    return here


def workspaces_for(paths: list[Path] | tuple[Path, ...], start: Path | None = None) -> list[tuple[Path, list[Path]]]:
    """The named paths grouped by the workspace each belongs to, in order of first appearance.

    For commands that read manifests without touching state (`validate`): each group is checked
    with its own workspace's config, where `find_workspace_for` refuses paths of two workspaces.
    A path inside no marked workspace goes where `find_workspace_for` would put it alone.
    """
    if not paths:
        return [(find_workspace_for(paths, start), [])]
    here = (start or Path.cwd()).resolve()
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        root, mark = locate_workspace(p if p.is_absolute() else here / p)
        if mark == "cwd":  # unmarked: never refused (only a marked path can be another workspace's)
            root = find_workspace_for([p], start)
        groups.setdefault(root, []).append(p)
    return list(groups.items())


def _unmarked_cwd_root(here: Path, absolute: list[Path], marks: list[tuple[Path, WorkspaceSource]]) -> Path:
    for root, mark in marks:
        if mark != "cwd":
            return root
    if all(_is_within(p, here) for p in absolute):
        return here
    first = absolute[0]
    return first if first.is_dir() else first.parent


def _foreign_workspace(path: Path, root: Path, here: Path, start: Path | None) -> UsageError:
    cwd = (start or Path.cwd()).resolve()
    shown = os.path.relpath(path, cwd) if _is_within(path, cwd) else str(path)
    return UsageError(
        f"{shown} belongs to the workspace at {root}, but this command uses the workspace at {here}: "
        f"planned against {here}'s state, its jobs would all look new and be created again",
        hint=f"run the command from {root} (cd {root} && jobrunner ...), or name the paths of one workspace at a time",
    )


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


_STATE_KEYS = {"backend", "path", "url"}
# `state: {backend, path, url}` and the flat spellings `state_backend`/`state_path`/`state_url`.
# `moved` is read by jobrunner.moves (declared renames), with its own file:line checks.
_TOP_KEYS = {"state", "state_backend", "state_path", "state_url", "providers", "parallelism", "workspace", "moved",
             "prices", "policy"}


def load_config(root: Path) -> WorkspaceConfig:
    """Read `<root>/jobrunner.yaml`; defaults when it does not exist. Bad content is a ConfigError."""
    from jobrunner.loader import decode, load_text  # the manifest loader: positions, duplicate keys

    path = root / CONFIG_FILE
    if not path.is_file():
        return WorkspaceConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FILE}: cannot read: {exc.strerror}") from None
    text, bad = decode(raw, CONFIG_FILE)
    if bad is not None:
        raise ConfigError(bad.format())
    loaded = load_text(text or "", CONFIG_FILE)
    if loaded.diagnostics:
        raise ConfigError("\n".join(d.format() for d in loaded.diagnostics))
    if not loaded.documents:
        return WorkspaceConfig()
    doc = loaded.documents[0]
    data = doc.data

    def fail(json_path: str, message: str, hint: str | None = None) -> ConfigError:
        pos = doc.position(json_path)
        return ConfigError(f"{CONFIG_FILE}:{pos.line}:{pos.column}: {json_path}: {message}", hint=hint)

    if not isinstance(data, dict):
        raise fail("$", "expected a mapping at the top level")
    for key in data:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(key, sorted(_TOP_KEYS), n=1)
            raise fail(f"$.{key}", f"unknown key `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""),
                       hint=f"allowed top-level keys: {', '.join(sorted(_TOP_KEYS))}")
    cfg = WorkspaceConfig()
    state = data.get("state") or {}
    if not isinstance(state, dict):
        raise fail("$.state", "`state` must be a mapping (backend, path, url)")
    for key in state:
        if key not in _STATE_KEYS:
            raise fail(f"$.state.{key}", f"unknown key `{key}` under state", hint="allowed: backend, path, url")
    flat = {k[len("state_"):]: (v, f"$.{k}") for k, v in data.items() if k.startswith("state_")}
    nested = {k: (v, f"$.state.{k}") for k, v in state.items()}
    for key, (value, json_path) in {**nested, **flat}.items():
        if key == "url" and value is None:
            continue
        if not isinstance(value, str) or not value:
            raise fail(json_path, f"must be a non-empty string, got {value!r}")
        if key == "backend":
            cfg.state_backend = value
        elif key == "path":
            cfg.state_path = value
        else:
            cfg.state_url = value
    cfg.providers = _providers(data.get("providers") or {}, fail)
    if "parallelism" in data:
        par = data["parallelism"]
        if isinstance(par, bool) or not isinstance(par, int) or par < 1:
            raise fail("$.parallelism", f"must be a positive integer, got {par!r}")
        cfg.parallelism = par
    if "workspace" in data:
        cfg.workspace_id = _workspace_id(data["workspace"], fail)
    cfg.prices = _prices(data.get("prices"), fail)
    _policy(data.get("policy"), cfg, fail)
    return cfg


def _providers(providers: Any, fail: Any) -> dict[str, dict[str, Any]]:
    """`providers:`, each a mapping of settings, its `base_url` checked."""
    if not isinstance(providers, dict):
        raise fail("$.providers", "`providers` must map provider names to mappings")
    for name, settings in providers.items():
        if settings is not None and not isinstance(settings, dict):
            raise fail(f"$.providers.{name}", f"settings of provider {name} must be a mapping")
    out = {str(k): dict(v or {}) for k, v in providers.items()}
    for name, settings in out.items():
        _check_base_url(settings.get("base_url"), f"$.providers.{name}.base_url", fail)
    return out


def _check_base_url(value: Any, json_path: str, fail: Any) -> None:
    """A mistyped `base_url` (`locall`, a host without its scheme) is named where it is written, by
    every command (`validate` and `plan` too), not first by the apply that builds the client.
    Whether `local` is allowed for that provider is its adapter's to say, when the client is built."""
    if value is None:
        return
    text = value.strip() if isinstance(value, str) else ""
    if text == "local" or text.startswith(("http://", "https://")):
        return
    raise fail(json_path, f"{value!r} is not an http(s) URL or `local`",
               hint="give the provider's API address (https://...), or `local` for a provider the local "
                    "platform stands in for; `jobrunner.yaml` in docs/manifests.md shows both")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _prices(value: Any, fail: Any) -> dict[str, float]:
    """`prices: {sku: usd_per_second}`: non-negative numbers (0 = free)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("$.prices", "`prices` must map hardware SKUs to USD per second",
                   hint="e.g. `prices: {gpu-a100-large: 0.0014}`")
    for sku, price in value.items():
        if not _number(price):
            raise fail(f"$.prices.{sku}", f"must be a non-negative number of USD per second, got {price!r}",
                       hint="e.g. 0.0014 for $5.04 an hour")
    return {str(k): float(v) for k, v in value.items()}


def _policy(value: Any, cfg: WorkspaceConfig, fail: Any) -> None:
    """`policy: {max_cost_per_apply: USD, max_creates_per_apply: N}` into `cfg`."""
    if value is None:
        return
    allowed = ("max_cost_per_apply", "max_creates_per_apply")
    if not isinstance(value, dict):
        raise fail("$.policy", "`policy` must be a mapping", hint=f"allowed keys: {', '.join(allowed)}")
    for key, limit in value.items():
        if key not in allowed:
            raise fail(f"$.policy.{key}", f"unknown key `{key}` under policy", hint=f"allowed: {', '.join(allowed)}")
        if limit is None:
            continue
        if key == "max_creates_per_apply" and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise fail(f"$.policy.{key}", f"must be a whole number of jobs, got {limit!r}")
        if not _number(limit):
            raise fail(f"$.policy.{key}", f"must be a non-negative number (USD), got {limit!r}")
    cfg.max_cost_per_apply = None if value.get("max_cost_per_apply") is None else float(value["max_cost_per_apply"])
    cfg.max_creates_per_apply = value.get("max_creates_per_apply")


def _workspace_id(value: Any, fail: Any) -> str:
    """`workspace: {id: ...}`, validated (see jobrunner.state.identity)."""
    from jobrunner.state.identity import WORKSPACE_ID_RULE, is_valid_workspace_id

    if not isinstance(value, dict) or set(value) != {"id"}:
        raise fail("$.workspace", "`workspace` must be a mapping with one key, `id`",
                   hint="e.g. `workspace: {id: nlp-models-3f2a9c1e}` (`jobrunner init` writes one)")
    if not is_valid_workspace_id(value["id"]):
        raise fail("$.workspace.id", f"invalid workspace id {value['id']!r}: {WORKSPACE_ID_RULE}")
    return str(value["id"])


def carries_our_api_version(path: Path) -> bool:
    """True when the file's bytes mention a jobrunner apiVersion, however misspelled (a cheap pre-filter)."""
    try:
        with path.open("rb") as fh:
            return _API_VERSION_RE.search(fh.read()) is not None
    except OSError:
        return True  # let the loader report why it cannot be read


def discover_manifest_files(paths: list[Path], root: Path) -> list[Path]:
    """Manifest files named by `paths` (default: the workspace root), sorted, without duplicates.

    A file named explicitly is always returned (the loader then says what is wrong with it); files
    found by scanning a directory are kept only when they carry our apiVersion. Hidden directories,
    SKIP_DIRS and directories holding a `.jobrunnerignore` file are not scanned.
    """
    found: dict[str, Path] = {}
    for raw in paths or [root]:
        p = raw if raw.is_absolute() else Path.cwd() / raw
        if p.is_file():
            found[str(p.resolve())] = p.resolve()
        elif p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                                     and not os.path.exists(os.path.join(dirpath, d, IGNORE_MARKER)))
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
    "IGNORE_MARKER",
    "WorkspaceConfig",
    "find_workspace",
    "locate_workspace",
    "find_workspace_for",
    "DEFAULT_STATE_PATH",
    "load_config",
    "discover_manifest_files",
    "carries_our_api_version",
    "display_path",
]
