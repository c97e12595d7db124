"""`jobrunner outputs`: the outputs state recorded (trained versions, batch item outputs)."""
from __future__ import annotations

import click

from jobrunner.commands.common import not_in_state, tracked_under
from jobrunner.commands.output_options import (
    json_option,
    pick_format,
)
from jobrunner.completion import complete_addresses
from jobrunner.exitcodes import ExitCode


@click.command("outputs")
@click.argument("addresses", nargs=-1, shell_complete=complete_addresses)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format: text for people, or json for tools.")
@json_option("the outputs")
def outputs(addresses: tuple[str, ...], fmt: str, json_out: bool) -> int:
    """Print the outputs recorded in state (trained versions, batch item outputs).

    \b
    Examples:
      jobrunner outputs
      jobrunner outputs Training/poems-ngram
      jobrunner outputs --format json PredictionBatch/poems-eval
    """
    fmt = pick_format(fmt, json_out)
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.render.outputs import outputs_json_chunks, outputs_text_chunks

    ws = open_workspace()
    doc = ws.store.load()
    for address in addresses:  # a typo must not read as "no outputs yet", exit 0
        if not tracked_under(doc, address):
            raise not_in_state(doc, address)
    # Streamed: one address redacted and printed at a time.
    if fmt == "json":
        for chunk in outputs_json_chunks(doc, addresses):
            click.echo(chunk, nl=False)
        click.echo()
    else:
        for chunk in outputs_text_chunks(doc, addresses):
            click.echo(chunk, nl=False)
    return ExitCode.OK
