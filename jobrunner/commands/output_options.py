"""The output options several commands share: `--json` and `--no-color`.

`--json` is the same on every command that has one: machine-readable output on standard output
(for `plan`, `validate`, `status` and `outputs` it is `--format json`; for `apply` and `destroy` a
stream of events, docs/json-events.md). `--no-color` (or `NO_COLOR` set) turns the live view into
one plain line per event.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from jobrunner.errors import UsageError

F = Callable[..., Any]


def json_option(what: str) -> Callable[[F], F]:
    return click.option("--json", "json_out", is_flag=True, help=f"Print {what} as JSON (docs/json-events.md).")


def no_color_option() -> Callable[[F], F]:
    return click.option("--no-color", "no_color", is_flag=True,
                        help="No live view or colors: one plain line per event (also when NO_COLOR is set).")


def pick_format(fmt: str, json_out: bool) -> str:
    """`--json` is `--format json`; asking for both JSON and another format is a mistake."""
    if not json_out:
        return fmt
    if fmt not in ("text", "json"):
        raise UsageError(f"--json and --format {fmt} ask for two formats", hint="give one of them")
    return "json"


def require_approval_for_json(json_out: bool, auto_approve: bool, command: str) -> None:
    """An event stream has no room for a prompt (as with `terraform apply -json`)."""
    if json_out and not auto_approve:
        raise UsageError(f"{command} --json needs --auto-approve",
                         hint=f"review `jobrunner plan` first, then run `jobrunner {command} --json --auto-approve`")


__all__ = ["json_option", "no_color_option", "pick_format", "require_approval_for_json"]
