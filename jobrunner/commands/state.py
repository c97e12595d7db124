"""`jobrunner state`: inspect and repair the state document (list, show, rm, unlock)."""
from __future__ import annotations

import json

import click

from jobrunner.errors import EXIT_OK, UsageError


def _open():
    from jobrunner.reconcile.planning import open_workspace

    return open_workspace()


@click.group("state")
def state() -> None:
    """Inspect and repair the state (where each address's remote jobs are recorded)."""


@state.command("list")
def list_() -> int:
    """Every address recorded in state."""
    ws = _open()
    doc = ws.store.load()
    for addr in sorted(doc.addresses):
        click.echo(addr)
    return EXIT_OK


@state.command("show")
@click.argument("address")
def show(address: str) -> int:
    """Everything state records for ADDRESS (history, intent, outputs), as JSON."""
    from jobrunner.redact import redact

    ws = _open()
    doc = ws.store.load()
    st = doc.addresses.get(address)
    if st is None:
        raise UsageError(f"{address}: not in state", hint="`jobrunner state list` shows the recorded addresses")
    click.echo(json.dumps(redact(st.to_json()), indent=2, sort_keys=True, default=str))
    return EXIT_OK


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True)
def rm(addresses: tuple[str, ...]) -> int:
    """Forget ADDRESSES without touching their remote jobs (a batch address removes all its items)."""
    ws = _open()
    if not ws.store.load().addresses:  # nothing recorded: say so before the lock writes anything here
        raise UsageError(f"{addresses[0]}: not in state (the workspace {ws.root} tracks nothing)",
                         hint="run jobrunner inside the workspace whose state records it")
    with ws.store.lock("state rm"):
        doc = ws.store.load()
        gone = []
        for a in addresses:
            matched = [k for k in doc.addresses if k == a or k.split("[", 1)[0] == a]
            if not matched:
                raise UsageError(f"{a}: not in state", hint="`jobrunner state list` shows the recorded addresses")
            gone.extend(matched)
        for k in gone:
            del doc.addresses[k]
        ws.store.save(doc)
    for k in sorted(set(gone)):
        click.echo(f"Removed {k}")
    return EXIT_OK


@state.command("unlock")
@click.option("--force", is_flag=True, help="Also break a lock whose holder still looks alive.")
def unlock(force: bool) -> int:
    """Free a state lock left behind by a command that died."""
    ws = _open()
    done = ws.store.unlock(force)
    # Backends say what they did ("ended the stale lock of ..."); say at least that it worked.
    click.echo(f"{done[:1].upper()}{done[1:]}." if isinstance(done, str) and done else "State unlocked.")
    return EXIT_OK


# `state migrate` lives in its own module (it copies between backends); registered here.
from jobrunner.commands.state_migrate import migrate as _migrate  # noqa: E402

state.add_command(_migrate)

# `state restore-backup` lives in its own module (recovery from a damaged state file); registered here.
from jobrunner.commands.state_restore import restore_backup_command as _restore_backup  # noqa: E402

state.add_command(_restore_backup)
