"""`jobrunner status`: every tracked address with its provider, remote id, status, age and attempts."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from jobrunner.commands.common import (
    refresh_deadline,
    with_pool,
)
from jobrunner.commands.output_options import (
    json_option,
    pick_format,
)
from jobrunner.exitcodes import ExitCode

if TYPE_CHECKING:
    from jobrunner.state.model import StateDoc


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format: a table for people, or json for tools.")
@click.option("--no-refresh", is_flag=True, help="Show what state recorded without asking the providers.")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Give up asking the providers after this long (default 2m, or $JOBRUNNER_REFRESH_TIMEOUT); exit 1.")
@json_option("the table")
def status(fmt: str, no_refresh: bool, timeout: str | None, json_out: bool) -> int:
    """Every tracked address: provider, remote id, status, age, attempts (refreshes running jobs).

    \b
    Examples:
      jobrunner status
      jobrunner status --no-refresh          # what state recorded, no provider asked
      jobrunner status --format json | jq '.addresses'
    """
    fmt = pick_format(fmt, json_out)
    from jobrunner.errors import ProviderError, StateLockedError
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.reconcile.timeutil import utcnow
    from jobrunner.refresh import refresh_tracked

    ws = open_workspace()
    doc = ws.store.load()
    if not no_refresh and not _anything_to_refresh(doc, timeout):
        no_refresh = True  # the same answer, without the HTTP stack's import and an event loop
    if not no_refresh:
        from jobrunner.refresh import absorb

        try:
            with refresh_deadline(timeout, "status"):
                remote = asyncio.run(with_pool(ws, lambda pool: refresh_tracked(doc, pool)))
        except ProviderError as err:
            err.hint = ((err.hint + "; " if err.hint else "")
                        + "`jobrunner status --no-refresh` shows what state recorded")
            raise
        if absorb(doc, remote):  # record what we learned, unless another command holds the state
            try:
                with ws.store.lock("status"):
                    fresh = ws.store.load()
                    if absorb(fresh, remote):
                        ws.store.save(fresh)
            except StateLockedError:
                pass
    from jobrunner.render.outputs import status_json_chunks, status_text_chunks

    # Streamed: neither the rows of 100,000 addresses nor their text is ever built whole.
    if fmt == "json":
        for chunk in status_json_chunks(doc, utcnow()):
            click.echo(chunk, nl=False)
        click.echo()
    else:
        for chunk in status_text_chunks(doc, utcnow()):
            click.echo(chunk, nl=False)
    return ExitCode.OK


def _anything_to_refresh(doc: StateDoc, timeout: str | None) -> bool:
    """Does any tracked job still change? When none does, a refresh asks nothing and learns
    nothing; only the refresh bound is still read, so a bad --timeout or
    $JOBRUNNER_REFRESH_TIMEOUT is the same error either way."""
    from jobrunner.refresh import needs_refresh, refresh_bound

    if any(needs_refresh(st) for st in doc.addresses.values()):
        return True
    refresh_bound(timeout, "status")
    return False
