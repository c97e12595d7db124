"""What the job commands share: rendering a plan, warnings, deadlines, the provider pool, the prompt,
the live view and the `--json` event stream.

Each command module (`plan`, `apply`, `destroy`, `status`, `logs`, `outputs`, `importing`) stays
thin: it parses its options, calls the library, and prints what the renderers return.
"""
from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click

from jobrunner.errors import UsageError
from jobrunner.plan_types import Plan


def render_plan(plan: Plan, fmt: str) -> str:
    import importlib

    module = {"text": "plan_text", "json": "plan_json", "markdown": "plan_markdown"}[fmt]
    return importlib.import_module(f"jobrunner.render.{module}").render(plan)


ALLOW_OVER_BUDGET_HELP = ("Run changes over the `policy:` budget of jobrunner.yaml (or of unknown cost) anyway; "
                          "recorded in the plan.")


def budget(plan: Plan, ws: Any, allow: bool) -> Any:
    """The policy check (jobrunner.estimate.policy): prints what an allowance let through; returns
    the refusal to raise once the plan has been shown (None: within budget or allowed)."""
    from jobrunner.estimate.policy import check_budget

    allowed, refused = check_budget(plan.estimate, ws.config, allow=allow)
    for line in allowed:
        click.echo(f"warning: over budget, allowed by --allow-over-budget: {line}", err=True)
    return refused


def tracked_under(doc: Any, address: str) -> list[str]:
    """The state addresses ADDRESS names: itself, or every item of a batch address."""
    if address in doc.addresses:
        return [address]
    return sorted(k for k in doc.addresses if k.split("[", 1)[0] == address)


def not_in_state(doc: Any, address: str) -> UsageError:
    """`ADDRESS: not in state`, with the closest tracked addresses when it looks like a typo."""
    import difflib

    known = sorted({k for k in doc.addresses} | {k.split("[", 1)[0] for k in doc.addresses})
    close = difflib.get_close_matches(address, known, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}? " if close else "") + "`jobrunner status` lists the tracked addresses"
    return UsageError(f"{address}: not in state", hint=hint)


def echo_warnings(warnings: list[str]) -> None:
    for w in warnings:
        click.echo(w, err=True)


def parse_timeout(value: str | None) -> float | None:
    from jobrunner.reconcile.timeutil import parse_duration

    return parse_duration(value, what="--timeout")


def refresh_deadline(option: str | None, command: str, started: float | None = None) -> Any:
    """The command deadline of a command's provider refresh (see `jobrunner.refresh.refresh_bound`)."""
    from jobrunner.providers.http import command_deadline
    from jobrunner.refresh import refresh_bound

    seconds, why = refresh_bound(option, command)
    return command_deadline((started if started is not None else time.monotonic()) + seconds, why)


async def with_pool(ws: Any, fn: Any) -> Any:
    from jobrunner.reconcile.pool import ProviderPool

    pool = ProviderPool(ws.config, ws.root)
    try:
        return await fn(pool)
    finally:
        await pool.aclose()


def confirm(auto_approve: bool, question: str) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed but standard input is not a terminal",
                         hint="review the plan and pass --auto-approve (e.g. in CI)")
    # The prompt runs inside asyncio.run, whose SIGINT handler only cancels the main task, which a
    # blocking read never notices: the first Ctrl-C would be swallowed. Python's own handler raises
    # KeyboardInterrupt in the read, and click turns that into Abort ("Interrupted.", exit 130).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        answer = click.prompt(f"{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value",
                              default="", show_default=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    return answer.strip() == "yes"


def json_events(operation: str) -> Any:
    from jobrunner.render.json_events import JsonEvents

    return JsonEvents(operation, sys.stdout)  # type: ignore[arg-type]


def live_progress(no_color: bool) -> Any:
    """The live view on a terminal, plain lines otherwise (or with --no-color / NO_COLOR)."""
    from jobrunner.render.progress import make_progress

    return make_progress(sys.stdout, color=not no_color)
