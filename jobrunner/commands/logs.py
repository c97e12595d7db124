"""`jobrunner logs`: a tracked job's logs (or every item's of a batch) from its provider, scrubbed of secrets;
`--follow` until it ends."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from jobrunner.commands.common import (
    not_in_state,
    tracked_under,
    with_pool,
)
from jobrunner.completion import complete_addresses
from jobrunner.errors import UsageError
from jobrunner.exitcodes import ExitCode


@click.command("logs")
@click.argument("address", shell_complete=complete_addresses)
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new log lines until the job finishes (one job, not a batch).")
def logs(address: str, follow: bool) -> int:
    """Print the logs of a tracked job, or of every item of a batch (ADDRESS as in `jobrunner status`).

    A log longer than providers.<name>.max_log_bytes (1 MiB) is shown from its end, after a
    `[jobrunner: log truncated: ...]` line saying how much was left out. A job that failed or was
    canceled ends with a `-- ADDRESS: failed: <error>` line on stderr.

    \b
    Examples:
      jobrunner logs 'PredictionBatch/poems-eval[moon]'
      jobrunner logs PredictionBatch/poems-eval        # every item, one after another
      jobrunner logs --follow Training/poems-ngram
    """
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.resources import JOB_MODEL

    ws = open_workspace()
    doc = ws.store.load()
    addresses = tracked_under(doc, address)
    if not addresses:
        raise not_in_state(doc, address)
    batch = addresses != [address]
    if batch and follow:
        raise UsageError(f"{address}: --follow takes one job, and this batch has {len(addresses)} items",
                         hint=f"follow one item, e.g. jobrunner logs --follow '{addresses[0]}'")
    for one in addresses:
        st = doc.addresses[one]
        if not st.remote_id or st.job_kind == JOB_MODEL:
            if batch:
                continue
            raise UsageError(f"{address}: has no job to show logs for")

    async def run(pool: Any) -> int:
        for one in addresses:
            st = doc.addresses[one]
            if not st.remote_id or st.job_kind == JOB_MODEL:
                continue
            if batch:
                click.echo(f"==> {one} ({st.status or '-'}) <==")
            await _print_logs(pool, one, st, follow, ws.root)
        return ExitCode.OK

    return asyncio.run(with_pool(ws, run))


async def _print_logs(pool: Any, address: str, st: Any, follow: bool, root: Path) -> None:
    """One job's log (followed until it ends with `follow`), then its error when it did not succeed."""
    from jobrunner.providers.base import SUCCEEDED, TERMINAL
    from jobrunner.providers.logmarker import LOG_TRUNCATED_PREFIX
    from jobrunner.redact import SECRETS, hidden_values, known_secrets, scrub_text
    from jobrunner.render.logs import ANCHOR_CHARS, log_increment

    provider = pool.get(st.provider)
    job = await provider.get(st.job_kind, st.remote_id, project_id=st.project_id)
    # A model may print its input: hide the values state keeps redacted (secret-named keys,
    # spec.sensitive), which only the provider's copy of the input still has; and the contents
    # of sensitive {$file} inputs, which only the manifest's files have.
    SECRETS.add_manifest_file(root / st.file)
    secrets = known_secrets()
    if isinstance(st.inputs, dict) and isinstance(st.inputs.get("input"), dict):
        secrets = secrets + hidden_values(st.inputs["input"], job.input)

    def scrub(text: str) -> str:
        return scrub_text(text, secrets=secrets)

    shown = ""
    delay = 0.5
    while True:
        text = await provider.logs(st.job_kind, st.remote_id, project_id=st.project_id) or ""
        # A long log comes back as its end only (behind a marker line): find what is new.
        new, continues = log_increment(shown, text)
        if not continues:  # rewritten upstream, or grew past what is kept: print it whole
            shown = ""
        if follow:
            # A line still being written waits for its end: a secret value it holds is never
            # printed in two halves that the scrubber cannot recognise.
            new = new[: new.rfind("\n") + 1]
        if new:
            click.echo(scrub(new), nl=not new.endswith("\n") and not follow)
            shown += new
        if text.startswith(LOG_TRUNCATED_PREFIX):
            shown = shown[-ANCHOR_CHARS[0]:]  # only its end is ever looked for again
        if not follow:
            break
        job = await provider.get(st.job_kind, st.remote_id, project_id=st.project_id)
        if job.status in TERMINAL:
            final = await provider.logs(st.job_kind, st.remote_id, project_id=st.project_id) or ""
            rest, continues = log_increment(shown, final)
            if rest and continues:
                click.echo(scrub(rest), nl=False)
            break
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 3.0)
    if follow or job.status in TERMINAL - {SUCCEEDED}:
        click.echo(scrub(_ending(address, job)), err=True)


def _ending(address: str, job: Any) -> str:
    """`-- ADDRESS: failed: <error>`: the last thing a log of a job that did not succeed must say."""
    why = job.error or (job.raw_status if job.raw_status and job.raw_status != job.status else "")
    return f"-- {address}: {job.status}" + (f": {why}" if why else "")
