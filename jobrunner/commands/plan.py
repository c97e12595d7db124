"""`jobrunner plan`: what apply would do, as text, JSON or a pull-request comment; `--out` saves it."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from jobrunner.commands.common import (
    ALLOW_OVER_BUDGET_HELP,
    budget,
    echo_warnings,
    refresh_deadline,
    render_plan,
    with_pool,
)
from jobrunner.commands.output_options import (
    json_option,
    pick_format,
)
from jobrunner.completion import complete_addresses
from jobrunner.exitcodes import for_plan


def _saved_plan_json(planned: Any, targets: tuple[str, ...], replace: tuple[str, ...] = (),
                     allow_over_budget: bool = False) -> dict[str, Any]:
    from jobrunner.redact import scrub_data
    from jobrunner.saved_plan import render_json_or_none, saved_plan_document

    rendered = render_json_or_none(lambda p: render_plan(p, "json"), planned.plan)
    # The saved plan's file boundary: no secret value (a webhook's `?code=`, a quoted error) in the
    # plan it shows. The rest is addresses and digests the staleness check compares as they are.
    return saved_plan_document(planned.plan, planned.resources, targets, scrub_data(rendered), replace=replace,
                               allow_over_budget=allow_over_budget)


@click.command("plan")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan to this file for `apply PLANFILE`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="Output format: text for people, json for tools, markdown for a pull-request comment.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when there are no changes, 2 when there are, 5 when none but a job needs attention.")
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Only plan this address and what it depends on (repeatable).")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Give up asking the providers after this long (default 2m, or $JOBRUNNER_REFRESH_TIMEOUT); exit 1.")
@click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Re-run this job even though it succeeded or failed (repeatable; a batch means every item).")
@json_option("the plan")
@click.option("--allow-over-budget", is_flag=True, help=ALLOW_OVER_BUDGET_HELP)
def plan(paths: tuple[str, ...], out: str | None, fmt: str, detailed_exitcode: bool, targets: tuple[str, ...],
         timeout: str | None, replace: tuple[str, ...], json_out: bool, allow_over_budget: bool) -> int:
    """Show what apply would do: diff the manifests against state and the providers' live status.

    \b
    Examples:
      jobrunner plan specs/examples/
      jobrunner plan --out plan.json specs/ && jobrunner apply plan.json
      jobrunner plan --detailed-exitcode --format markdown > plan.md   # CI: exit 2 = changes
    """
    from jobrunner.reconcile.planning import (
        make_plan,
        open_workspace,
        require_manifests,
        resolve_paths,
    )

    fmt = pick_format(fmt, json_out)

    bound = refresh_deadline(timeout, "plan")
    ws = open_workspace(paths=paths)
    abs_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, abs_paths)
    doc = ws.store.load()
    with bound:
        planned = asyncio.run(with_pool(
            ws, lambda pool: make_plan(ws, abs_paths, doc, pool, targets=targets, replace=replace)))
    echo_warnings(planned.warnings)
    refused = budget(planned.plan, ws, allow_over_budget)
    text = render_plan(planned.plan, fmt)
    click.echo(text, nl=not text.endswith("\n"))
    if refused is not None:
        raise refused  # shown first, so the numbers are on screen; not saved
    if out:
        saved_doc = _saved_plan_json(planned, targets, replace, allow_over_budget)
        Path(out).write_text(json.dumps(saved_doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if fmt == "text":
            click.echo(f"\nSaved the plan to {out}; `jobrunner apply {out}` executes exactly this plan.")
    return int(for_plan(planned.plan, detailed=detailed_exitcode))
