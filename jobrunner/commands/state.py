"""`jobrunner state`: inspect and repair the state document (list, show, rm, mv, unlock)."""
from __future__ import annotations

import json

import click

from jobrunner.completion import complete_addresses
from jobrunner.errors import UsageError
from jobrunner.exitcodes import ExitCode


def _open():
    from jobrunner.reconcile.planning import open_workspace

    return open_workspace()


@click.group("state")
def state() -> None:
    """Inspect and repair the state (where each address's remote jobs are recorded).

    \b
    Examples:
      jobrunner state list
      jobrunner state mv Training/poems-ngram Training/poems-ngram-v2
      jobrunner state migrate --to postgresql://ci@db.internal/jobrunner
    """


@state.command("list")
def list_() -> int:
    """Every address recorded in state.

    \b
    Examples:
      jobrunner state list
      jobrunner state list | grep '^PredictionBatch/'
    """
    ws = _open()
    doc = ws.store.load()
    for addr in sorted(doc.addresses):
        click.echo(addr)
    return ExitCode.OK


@state.command("show")
@click.argument("address", shell_complete=complete_addresses)
def show(address: str) -> int:
    """Everything state records for ADDRESS (history, intent, outputs), as JSON.

    \b
    Examples:
      jobrunner state show Training/poems-ngram
      jobrunner state show 'PredictionBatch/poems-eval[moon]' | jq .history
    """
    from jobrunner.redact import redact

    ws = _open()
    doc = ws.store.load()
    st = doc.addresses.get(address)
    if st is None:
        raise UsageError(f"{address}: not in state", hint="`jobrunner state list` shows the recorded addresses")
    click.echo(json.dumps(redact(st.to_json()), indent=2, sort_keys=True, default=str))
    return ExitCode.OK


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True, shell_complete=complete_addresses)
def rm(addresses: tuple[str, ...]) -> int:
    """Forget ADDRESSES without touching their remote jobs (a batch address removes all its items).

    \b
    Examples:
      jobrunner state rm Training/poems-ngram
      jobrunner state rm 'PredictionBatch/poems-eval[moon]' 'PredictionBatch/poems-eval[dawn]'
    """
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
    return ExitCode.OK


@state.command("mv")
@click.argument("source", metavar="OLD", shell_complete=complete_addresses)
@click.argument("destination", metavar="NEW")
def mv(source: str, destination: str) -> int:
    """Move OLD's whole record (remote ids, history, fingerprint, outputs, intent) to NEW.

    For a rename the manifests already show: the next plan then sees the same job at NEW (a noop,
    or a wait while it runs) instead of canceling it at OLD and creating it again at NEW. A batch
    address moves every item: `state mv PredictionBatch/old PredictionBatch/new`. Nothing is sent
    to any provider. The `moved:` list of jobrunner.yaml does the same declaratively, in review.

    \b
    Examples:
      jobrunner state mv Training/poems-ngram Training/poems-ngram-v2
      jobrunner state mv PredictionBatch/poems-eval PredictionBatch/poems-eval-2026
    """
    from jobrunner.moves import Move, apply_moves, check_moves
    from jobrunner.resources import resource_of

    problems = check_moves([Move(source, destination, "state mv", 0, 0, 0)])
    if problems:
        raise UsageError(f"state mv {source} {destination}: {problems[0].message}",
                         hint="addresses look like Training/name, PredictionBatch/name or PredictionBatch/name[key]")
    ws = _open()
    with ws.store.lock("state mv"):
        doc = ws.store.load()
        pairs = _mv_pairs(doc, source, destination)
        apply_moves(doc, pairs, {})
        ws.store.save(doc)  # one atomic save: every item moves, or none
    for old, new in pairs.items():
        click.echo(f"Moved {old} to {new}")
    click.echo(f"Successfully moved {len(pairs)} address(es). Next: rename {resource_of(source)} in its manifest "
               f"if you have not yet, then `jobrunner plan` shows {resource_of(destination)} unchanged.")
    return ExitCode.OK


def _mv_pairs(doc: object, source: str, destination: str) -> dict[str, str]:
    """{old: new} for `state mv`; UsageError when OLD is missing or NEW (or any item of it) exists."""
    addresses = doc.addresses  # type: ignore[attr-defined]
    if "[" in source:
        pairs = {source: destination} if source in addresses else {}
    else:
        pairs = {a: destination + a[len(source):] for a in sorted(addresses)
                 if a == source or a.startswith(source + "[")}
    if not pairs:
        raise UsageError(f"state mv: {source} is not in state; nothing was moved",
                         hint="`jobrunner state list` shows the recorded addresses")
    taken = [new for new in pairs.values() if new in addresses]
    if "[" not in destination:
        taken += [a for a in addresses if a.startswith(destination + "[") and a not in taken]
    if taken:
        listed = ", ".join(sorted(taken)[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise UsageError(f"state mv: {destination} already exists in state ({listed}); nothing was moved",
                         hint=f"an address holds one job: `jobrunner state rm {destination}` first if its record "
                              "is no longer wanted (its remote jobs are left alone)")
    return pairs


@state.command("unlock")
@click.option("--force", is_flag=True, help="Also break a lock whose holder still looks alive.")
def unlock(force: bool) -> int:
    """Free a state lock left behind by a command that died.

    \b
    Examples:
      jobrunner state unlock
      jobrunner state unlock --force     # the holder looks alive but is not
    """
    ws = _open()
    done = ws.store.unlock(force)
    # Backends say what they did ("ended the stale lock of ..."); say at least that it worked.
    click.echo(f"{done[:1].upper()}{done[1:]}." if isinstance(done, str) and done else "State unlocked.")
    return ExitCode.OK


# `state migrate` lives in its own module (it copies between backends); registered here.
from jobrunner.commands.state_migrate import migrate as _migrate  # noqa: E402

state.add_command(_migrate)

# `state restore-backup` lives in its own module (recovery from a damaged state file); registered here.
from jobrunner.commands.state_restore import restore_backup_command as _restore_backup  # noqa: E402

state.add_command(_restore_backup)
# `state recover` too (a state lost together with its backup: look every address up first).
from jobrunner.commands.state_recover import recover_command as _recover  # noqa: E402

state.add_command(_recover)
