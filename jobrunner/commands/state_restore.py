"""`jobrunner state restore-backup`: the way back from a damaged state file.

Copying `state.json.bak` over `state.json` by hand is not enough: the backup lags the state it
replaces, and the jobs created after it was taken would be planned as new and run twice. This
command restores the backup under the state lock, keeps the damaged file beside it (never deleted:
it is evidence, and may hold ids worth reading), and marks the restored state as recovered
(`StateDoc.recovered_at`), so the next plan and apply look every address the backup does not
track up on the provider before creating anything (jobrunner.state.recovery).
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobrunner.errors import StateError, UsageError
from jobrunner.exitcodes import ExitCode
from jobrunner.timestamps import to_rfc3339, utcnow

if TYPE_CHECKING:
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import StateDoc
    from jobrunner.state.store import StateStore


def _damaged_name(path: Path) -> Path:
    """Where the damaged state file is kept: `state.json.damaged-<UTC time>` (never overwritten)."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return candidate


def restore_backup(store: StateStore, *, force: bool = False) -> tuple[StateDoc, Path | None]:
    """Restore `store`'s backup as its state; returns (the restored StateDoc, where the old file went).

    Raises UsageError for a backend without a backup file, or a state file that is fine (unless
    `force`), and StateError when the backup itself is missing or unreadable.
    """
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.recovery import lookup_window_start

    if not isinstance(store, LocalFileStore):
        raise UsageError(
            f"{store.describe()} keeps no state.json.bak to restore",
            hint="restore the database from its own backups; the state there is written in transactions "
            "and is never left half-written by jobrunner.",
        )
    if not store.backup_path.is_file():  # before the lock, which would create .jobrunner/
        raise _no_backup(store.backup_path)
    with store.lock("state restore-backup"):
        try:
            raw = store.backup_path.read_bytes()
            mtime = datetime.fromtimestamp(os.stat(store.backup_path).st_mtime, tz=UTC)
        except FileNotFoundError:
            raise _no_backup(store.backup_path) from None
        try:
            backup = store._parse(raw, store.backup_path)
        except StateError as exc:
            raise StateError(f"the backup cannot be restored: {exc.message}",
                             hint="fix one of the two files by hand; both are left as they are") from None
        backup.workspace_id = store._checked_identity(backup.workspace_id)
        current_ok = _current_state_readable(store)
        if current_ok and not force:
            raise UsageError(
                f"state file {store.path} is readable; restoring the backup would replace it with an older "
                f"state (serial {backup.serial})",
                hint="the backup is only for a damaged state file; add --force to restore it anyway.",
            )
        aside = None
        if store.path.exists():
            aside = _damaged_name(store.path)
            os.replace(store.path, aside)
        backup.recovered_at = to_rfc3339(lookup_window_start(backup, mtime))
        store._known_good = None
        store.save(backup)
    return backup, aside


def _no_backup(path: Path) -> StateError:
    return StateError(f"there is no backup to restore ({path} does not exist)",
                      hint="fix the state file by hand, or move it aside and run `jobrunner state recover`: it "
                      "looks every address up on its provider and records the jobs it finds, so none is created again")


def _current_state_readable(store: LocalFileStore) -> bool:
    try:
        raw = store.path.read_bytes()
    except FileNotFoundError:
        return False
    try:
        store._parse(raw, store.path)
    except StateError:
        return False
    return True


@click.command("restore-backup")
@click.option("--force", is_flag=True, help="Restore even though the current state file is readable.")
def restore_backup_command(force: bool) -> int:
    """Restore the last good state (state.json.bak) after the state file was damaged.

    \b
    The damaged file is kept beside it as state.json.damaged-<time>. Jobs created after the
    backup was taken are not in it: the restored state is marked recovered, so the next apply
    looks every address it does not track up on the provider and adopts the job it finds
    instead of creating it again. Run `jobrunner apply` next (with no paths: the whole workspace).

    \b
    Examples:
      jobrunner state restore-backup && jobrunner apply
      jobrunner state restore-backup --force
    """
    from jobrunner.reconcile.planning import open_workspace

    ws = open_workspace()
    doc, aside = restore_backup(ws.store, force=force)
    kept = f"; the damaged file is kept as {aside}" if aside else ""
    click.echo(f"Restored {ws.store.describe()} from its backup (serial {doc.serial - 1}, "
               f"{len(doc.addresses)} addresses){kept}.")
    click.echo(f"State is marked recovered: jobs created since {doc.recovered_at} may be missing from it, so the "
               "next plan and apply look every address it does not track up on the provider before creating "
               "anything. Run `jobrunner apply` for the whole workspace next.")
    return ExitCode.OK


__all__ = ["restore_backup", "restore_backup_command"]
