"""Which workspace a state belongs to, so one repository never acts on another's state.

Two repositories pointed at one shared state (the same PostgreSQL URL and namespace, or a state
file copied between checkouts) would each see the other's addresses as removed from their
manifests, and an apply would cancel the other's running jobs. To make that impossible, a
workspace names itself in its committed `jobrunner.yaml` (`workspace: {id: ...}`, written by
`jobrunner init`), the state records the id of the workspace that writes it, and every store
checks the two on every load (`check_identity`):

- state and config name the same id: fine;
- the state records an id and the config names another one, or none: `WorkspaceMismatchError`
  (exit 1), nothing read or written, with both ways out (separate state, or fix the config);
- the state records no id (new, or written by an older jobrunner) and the config names one: the
  state is claimed, the id is recorded by the next write;
- neither names one: accepted for the local state file (it lives inside the workspace); the
  PostgreSQL store, shared by nature, refuses to be used without an id.

Pure: no I/O here; the stores call it.
"""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Final

from jobrunner.errors import StateError

# Committed in jobrunner.yaml and shown in messages: short, readable, safe in any shell or URL.
WORKSPACE_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WORKSPACE_ID_RULE: Final = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"


class _Unchecked:
    """The type of `UNCHECKED`: a store built without a workspace config (tests, library use)."""

    def __repr__(self) -> str:
        return "UNCHECKED"


# A store given this checks nothing; `open_store` always passes the config's id (or None).
UNCHECKED: Final = _Unchecked()


class WorkspaceMismatchError(StateError):
    """The state belongs to another workspace than the one running the command (exit 1)."""


def is_valid_workspace_id(value: object) -> bool:
    return isinstance(value, str) and WORKSPACE_ID_RE.match(value) is not None


def new_workspace_id(root: Path) -> str:
    """A fresh id for a workspace (`jobrunner init`): its directory name, made safe, plus 8 random
    hex digits, so ids read well in messages and two repositories never pick the same one."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", root.resolve().name).strip("-._")[:60] or "workspace"
    return f"{stem}-{secrets.token_hex(4)}"


def check_identity(recorded: str | None, expected: str | None | _Unchecked, where: str,
                   separate_hint: str) -> str | None:
    """The id the state should carry from now on; raises `WorkspaceMismatchError` on a mismatch.

    `recorded`: the id in the state (None when it has none). `expected`: the workspace config's
    id (None when it names none; `UNCHECKED` to skip the check). `where`: the store, for messages.
    `separate_hint`: how this backend gives a repository its own state (e.g. `?workspace=NAME`).
    """
    if isinstance(expected, _Unchecked):
        return recorded
    if recorded is None or recorded == expected:
        return expected if recorded is None else recorded
    same = (f"if this really is the workspace that state belongs to, set `workspace: {{id: {recorded}}}` "
            "in jobrunner.yaml (and commit it, so CI and every clone use it)")
    if expected is None:
        raise WorkspaceMismatchError(
            f"state in {where} belongs to workspace {recorded!r}, but this workspace's jobrunner.yaml "
            "names no workspace id; refusing to use it (nothing was read or changed)",
            hint=f"{same}; otherwise this repository needs its own state: {separate_hint}.",
        )
    raise WorkspaceMismatchError(
        f"state in {where} belongs to workspace {recorded!r}, but this workspace's jobrunner.yaml says "
        f"workspace id {expected!r}; two repositories are sharing one state, refusing to use it "
        "(nothing was read or changed)",
        hint=f"give this repository its own state: {separate_hint}; or, {same}.",
    )


__all__ = [
    "UNCHECKED",
    "WORKSPACE_ID_RE",
    "WORKSPACE_ID_RULE",
    "WorkspaceMismatchError",
    "check_identity",
    "is_valid_workspace_id",
    "new_workspace_id",
]
