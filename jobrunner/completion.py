"""Shell completion of state addresses: what `logs`, `outputs`, `--target` and `state` commands take.

Click completes commands, options, choices and paths by itself once the shell has loaded its script
(`eval "$(_JOBRUNNER_COMPLETE=bash_source jobrunner)"`, see docs/cli.md). Addresses come from the
workspace's state, read here the cheapest way there is: the local state file's JSON, without its
lock, without a provider and without the network (a PostgreSQL backend completes nothing rather
than open a connection on every Tab). Any problem yields no candidates, never a message: the
shell is printing a prompt line.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from click.shell_completion import CompletionItem


def _state_addresses(start: Path | None = None) -> set[str]:
    """Every address of the local state file, with the batch address of each batch item."""
    from jobrunner.workspace import LOCAL_STATE_BACKEND, find_workspace, load_config

    root = find_workspace(start)
    config = load_config(root)
    if config.state_backend != LOCAL_STATE_BACKEND:
        return set()
    data = json.loads((root / config.state_path).read_text(encoding="utf-8"))
    found: set[str] = set()
    for address in (data.get("addresses") or {}):
        found.add(str(address))
        if "[" in address:  # PredictionBatch/b[key] also names its batch PredictionBatch/b
            found.add(str(address).split("[", 1)[0])
    return found


def complete_addresses(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Click `shell_complete` hook: the tracked addresses starting with what was typed."""
    try:
        addresses = _state_addresses()
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the prompt
        return []
    return [CompletionItem(a) for a in sorted(addresses) if a.startswith(incomplete)]


__all__ = ["complete_addresses"]
