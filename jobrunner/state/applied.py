"""A note, outside the workspace, that a local state file once held jobs: so its loss is noticed.

A state file and its backup can both vanish (`rm -rf .jobrunner`, a fresh checkout over the old
directory, a disk cleanup). Read as empty, the next apply would create every job of the workspace
again. The state directory cannot witness its own loss, so the first save of a state lineage that
tracks jobs leaves a small marker in the per-user jobrunner directory (`$JOBRUNNER_HOME/workspaces/`,
the same home the auto-started local platform uses; by default `$XDG_STATE_HOME/jobrunner/`, else
`~/.local/state/jobrunner/`), named
after the state file's absolute path. When that state file and its backup are both missing and
a marker for it exists, loading refuses (`lost_state_error`) and names `jobrunner state recover`,
which looks every address up on its provider before anything is created.

Best effort by design: a home directory that cannot be written leaves no marker (and nothing is
detected); a workspace moved to another path or another machine has none either. Markers of
workspaces whose directory no longer exists are pruned whenever a new marker is written.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from jobrunner.errors import StateError

MARKER_DIR_ENV = "JOBRUNNER_MARKER_DIR"  # tests and unusual setups: where markers live
HOME_ENV = "JOBRUNNER_HOME"  # the per-user jobrunner directory (also read by local.autostart)


def marker_dir(env: dict[str, str] | None = None) -> Path:
    """Where markers are kept (`JOBRUNNER_MARKER_DIR`, else `$JOBRUNNER_HOME/workspaces`, else the XDG
    state directory's `jobrunner/workspaces`)."""
    env = dict(os.environ) if env is None else env
    if env.get(MARKER_DIR_ENV):
        return Path(env[MARKER_DIR_ENV])
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser() / "workspaces"
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "jobrunner" / "workspaces"


def marker_path(state_path: Path) -> Path:
    """The marker for the state file at `state_path` (keyed by its absolute path)."""
    key = hashlib.sha256(str(state_path.absolute()).encode("utf-8")).hexdigest()[:24]
    return marker_dir() / f"{key}.json"


def read_marker(state_path: Path) -> dict[str, Any] | None:
    """The marker recorded for `state_path`, or None (none, unreadable, or for another path)."""
    try:
        data = json.loads(marker_path(state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("state") != str(state_path.absolute()):
        return None
    return data


def note_applied(state_path: Path, lineage: str, workspace_id: str | None, first_saved: str) -> None:
    """Record that the state file at `state_path` (lineage `lineage`) holds jobs. Never raises."""
    existing = read_marker(state_path)
    if existing is not None and existing.get("lineage") == lineage:
        return
    data = {"state": str(state_path.absolute()), "lineage": lineage, "workspace_id": workspace_id,
            "first_saved": first_saved}
    target = marker_path(state_path)
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        _prune(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)


def forget(state_path: Path) -> None:
    """Remove the marker of `state_path` (the user started over on purpose)."""
    with contextlib.suppress(OSError):
        marker_path(state_path).unlink()


def _prune(directory: Path) -> None:
    """Drop markers of workspaces that no longer exist (their `.jobrunner/`'s parent is gone)."""
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            state = Path(json.loads(path.read_text(encoding="utf-8"))["state"])
            if not state.parent.parent.exists():
                path.unlink()


def lost_state_error(state_path: Path, backup_path: Path) -> StateError | None:
    """The refusal for a state file and backup that both vanished after holding jobs, else None."""
    marker = read_marker(state_path)
    if marker is None:
        return None
    since = marker.get("first_saved") or "an earlier run"
    return StateError(
        f"state file {state_path} and its backup {backup_path.name} are both missing, but this workspace "
        f"has tracked jobs there since {since}; refusing to start from empty state (every job would be "
        "created again)",
        hint="run `jobrunner state recover` with the same paths as this command (e.g. `jobrunner state "
        "recover specs/`): it looks every address of those manifests up on its provider and records the jobs "
        "it finds before anything is created. To start from empty state on purpose, "
        f"remove {marker_path(state_path)} first.",
    )


__all__ = ["MARKER_DIR_ENV", "forget", "lost_state_error", "marker_dir", "marker_path", "note_applied",
           "read_marker"]
