"""`jobrunner state migrate`: copy a workspace's state between backends.

A team that starts on a laptop with the local state file moves it to PostgreSQL when CI starts
applying (`--to postgresql://...`), and can copy it back (`--to local`). Both stores are locked
for the copy, the destination must be empty unless `--force`, the lineage is kept (so plans saved
before the move still match), and the copy is read back and compared before success is reported.
The source is left as it was: switching a workspace over is a config change the user makes.
"""
from __future__ import annotations

from pathlib import Path

import click

from jobrunner.errors import StateError, UsageError
from jobrunner.state.model import StateDoc
from jobrunner.state.store import StateStore, open_store
from jobrunner.workspace import LOCAL_STATE_BACKEND, WorkspaceConfig, find_workspace, load_config


def store_for(target: str, config: WorkspaceConfig, root: Path) -> StateStore:
    """A store from a `--to`/`--from` value: `local`, a file path, or a postgresql:// URL."""
    if target.startswith(("postgresql://", "postgres://")):
        from jobrunner.state.postgres import PostgresStore

        return PostgresStore(target, workspace_id=config.workspace_id)
    from jobrunner.state.local_file import LocalFileStore

    if target == LOCAL_STATE_BACKEND:
        path = Path(config.state_path or ".jobrunner/state.json")
    else:
        path = Path(target[len("file://"):] if target.startswith("file://") else target)
    return LocalFileStore(path if path.is_absolute() else root / path, workspace_id=config.workspace_id)


def migrate_state(source: StateStore, dest: StateStore, *, force: bool = False) -> StateDoc:
    """Copy `source`'s document into `dest` under both locks; returns the document written."""
    if source.describe() == dest.describe():
        raise UsageError(
            f"source and destination are the same store ({source.describe()})",
            hint="name the other backend with --to (and --from when the default source is not the one to copy).",
        )
    with source.lock("state migrate"), dest.lock("state migrate"):
        doc = source.load()
        # A destination state file that is gone (with its backup) is what this copy replaces: not
        # the lost state that `load` refuses to read as empty (jobrunner.state.applied).
        from jobrunner.commands.state_recover import load_even_if_lost

        existing = load_even_if_lost(dest)
        if existing.addresses and not force:
            raise UsageError(
                f"{dest.describe()} already holds state ({len(existing.addresses)} addresses, serial "
                f"{existing.serial}); refusing to overwrite it",
                hint="check that this is the right destination; --force replaces its content.",
            )
        copy = StateDoc(
            format_version=doc.format_version,
            serial=max(doc.serial, existing.serial),
            lineage=doc.lineage,
            addresses=dict(doc.addresses),
            workspace_id=doc.workspace_id,
            recovered_at=doc.recovered_at,
        )
        dest.save(copy)
        check = dest.load()
        if check.addresses != doc.addresses or check.lineage != doc.lineage:
            raise StateError(
                f"the copy in {dest.describe()} does not read back as written",
                hint="the source is unchanged; run the migration again with --force.",
            )
    return check


@click.command("migrate")
@click.option("--to", "to", required=True, metavar="TARGET",
              help="Destination: `local` (the workspace's state file), a file path, or postgresql://USER@HOST/DB[?workspace=NAME].")
@click.option("--from", "from_", metavar="SOURCE", default=None,
              help="Source, same forms as --to (default: the state this workspace uses now).")
@click.option("--force", is_flag=True, help="Overwrite a destination that already holds state.")
def migrate(to: str, from_: str | None, force: bool) -> int:
    """Copy this workspace's state to another backend (and back).

    \b
    Examples:
      jobrunner state migrate --to postgresql://ci@db.internal/jobrunner
      jobrunner state migrate --to local        # back into .jobrunner/state.json

    The source is left unchanged. Give the password through PGPASSWORD or ~/.pgpass rather than
    in the URL.
    """
    root = find_workspace()
    config = load_config(root)
    source = store_for(from_, config, root) if from_ else open_store(config, root)
    dest = store_for(to, config, root)
    doc = migrate_state(source, dest, force=force)
    click.echo(
        f"Copied {len(doc.addresses)} address(es) (lineage {doc.lineage}, serial {doc.serial}) "
        f"from {source.describe()} to {dest.describe()}."
    )
    if to.startswith(("postgresql://", "postgres://")):
        click.echo(
            "To use it, export JOBRUNNER_STATE_URL with that URL (in CI: from a secret), or set "
            "`state: {backend: postgres, url: ...}` in jobrunner.yaml."
        )
    elif to == LOCAL_STATE_BACKEND:
        click.echo("To use it, unset JOBRUNNER_STATE_URL and remove `state.backend: postgres` from jobrunner.yaml.")
    else:  # a state file elsewhere: a copy, or a state file this workspace can be pointed at
        click.echo("To use it, unset JOBRUNNER_STATE_URL and set `state: {backend: local, path: <that file>}` "
                   "in jobrunner.yaml.")
    for store in (source, dest):
        close = getattr(store, "close", None)
        if close:
            close()
    return 0
