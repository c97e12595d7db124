"""The state backend interface, and the one place that picks a backend for a workspace.

Every command that reads or writes state goes through a `StateStore`. The protocol is kept small
on purpose (load, save, lock, unlock, describe) so a new backend (PostgreSQL for CI, later maybe an
object store) only has to get those five right. Backends:

- `local` (default): a JSON file under the workspace with a journal of recent saves beside it,
  `jobrunner.state.local_file.LocalFileStore` (and `jobrunner.state.journal`).
- `postgres`: `jobrunner.state.postgres`, imported lazily so the local path never pays for it.

The backend comes from `JOBRUNNER_STATE_URL` when set (`postgresql://...`, or `file:///path` /
a plain path for a local file), else from the workspace config (`state.backend`, `state.path`,
`state.url`).

Whatever the backend, the store is given the workspace's `workspace.id` and refuses a state that
records another one (jobrunner.state.identity).
"""
from __future__ import annotations

import os
from collections.abc import Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Protocol,
    runtime_checkable,
)
from urllib.parse import unquote, urlsplit

from jobrunner.errors import ConfigError
from jobrunner.state.model import StateDoc
from jobrunner.workspace import LOCAL_STATE_BACKEND

if TYPE_CHECKING:
    from jobrunner.workspace import WorkspaceConfig

STATE_URL_ENV = "JOBRUNNER_STATE_URL"


@runtime_checkable
class StateStore(Protocol):
    """Where a workspace's `StateDoc` lives.

    - `load()` returns the current document (an empty one with a fresh lineage when none exists);
      an unreadable document raises `StateError` saying how to recover.
    - `save(doc, changed=None)` writes it atomically and bumps `doc.serial` (the caller's object is
      updated). `changed`, when given, names the only addresses changed since the previous save
      (deleted ones included): the store writes just those (a journal record for the local file,
      rows for PostgreSQL) and never looks at the others. None means "anything may have changed".
    - `lock(command)` is a context manager held for a whole state-writing command; it raises
      `StateLockedError` (exit 4) naming the holder when someone else holds it.
    - `unlock(force)` frees a lock left behind by a dead or vanished holder (`jobrunner state
      unlock`); `force` also breaks a lock whose holder still looks alive. It returns a sentence
      saying what it did ("ended the stale lock of ...") for the CLI to print.
    - `describe()` names the backend for messages ("local file .jobrunner/state.json").
    """

    def load(self) -> StateDoc: ...

    def save(self, doc: StateDoc, changed: Collection[str] | None = None) -> None: ...

    def lock(self, command: str) -> AbstractContextManager[None]: ...

    def unlock(self, force: bool) -> str: ...

    def describe(self) -> str: ...


def open_store(config: WorkspaceConfig, root: Path) -> StateStore:
    """The store a workspace is configured to use (env `JOBRUNNER_STATE_URL` first)."""
    url = os.environ.get(STATE_URL_ENV) or None
    backend = getattr(config, "state_backend", LOCAL_STATE_BACKEND) or LOCAL_STATE_BACKEND
    # Every store of a workspace checks the state's recorded workspace id against this one.
    ident = getattr(config, "workspace_id", None)
    if url:
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("postgres", "postgresql"):
            return _postgres(url, ident)
        if scheme == "file":
            return _local(Path(unquote(urlsplit(url).path)), root, ident)
        if scheme == "" or len(scheme) == 1:  # a plain path (a Windows drive letter looks like a scheme)
            return _local(Path(url), root, ident)
        raise ConfigError(
            f"{STATE_URL_ENV}: unsupported state URL scheme {scheme!r}",
            hint="use postgresql://user@host/db for shared state, or a file path for a local state file",
        )
    if backend == LOCAL_STATE_BACKEND:
        return _local(Path(getattr(config, "state_path", None) or ".jobrunner/state.json"), root, ident)
    if backend in ("postgres", "postgresql"):
        state_url = getattr(config, "state_url", None)
        if not state_url:
            raise ConfigError(
                "jobrunner.yaml: state.backend is postgres but state.url is not set",
                hint=f"set state.url: postgresql://user@host/db in jobrunner.yaml, or {STATE_URL_ENV}",
            )
        return _postgres(state_url, ident)
    raise ConfigError(
        f"jobrunner.yaml: unknown state backend {backend!r}",
        hint="state.backend is one of: local, postgres",
    )


def _local(path: Path, root: Path, workspace_id: str | None) -> StateStore:
    from jobrunner.state.local_file import LocalFileStore

    return LocalFileStore(path if path.is_absolute() else root / path, workspace_id=workspace_id)


def _postgres(url: str, workspace_id: str | None) -> StateStore:
    try:
        from jobrunner.state import postgres
    except ImportError as exc:  # the module, or its driver (psycopg), is missing
        raise ConfigError(
            f"the PostgreSQL state backend is not available ({exc})",
            hint="install the driver: pip install 'psycopg[binary]'",
        ) from None
    return postgres.open_postgres_store(url, workspace_id=workspace_id)


__all__ = ["STATE_URL_ENV", "StateStore", "open_store"]
