"""Every command's `--help` as a user reads it, and shell completion as the shell asks for it.

The help walk covers every command and group the CLI lists (a new command is covered the day it
lands): 2-3 examples that parse with the command's real options, help text on every option, and a
named metavar (`--timeout DURATION`, never a bare `D` or click's `TEXT`). Completion runs the real
`python -m jobrunner` the way bash, zsh and fish call it, against a workspace whose state the real
apply wrote, and checks that completing addresses asks no provider anything.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest

from jobrunner.cli import cli
from tests.acceptance.conftest import REPO, Platform, run_cli

CLICK_DEFAULT_METAVARS = {"TEXT", "INTEGER", "FLOAT", "PATH", "FILENAME", "DIRECTORY", "BOOLEAN", "UUID",
                          "INTEGER RANGE", "FLOAT RANGE"}
ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    found: list[tuple[str, ...]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands()


def _examples(help_text: str) -> list[str]:
    lines = help_text.splitlines()
    assert "Examples:" in lines or "  Examples:" in lines, help_text
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    examples = []
    for line in lines[start + 1:]:
        if not line.strip().startswith("jobrunner "):
            break
        examples.append(line.strip())
    return examples


def _parses(example: str) -> None:
    """The example's first command line parses with the CLI's real options and arguments."""
    words = shlex.split(re.split(r"\s(?:&&|\||>)\s|\s+#", example)[0])[1:]
    command: click.Command = cli
    ctx = command.make_context("jobrunner", list(words), resilient_parsing=False)
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]  # click keeps the subcommand here
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command, ctx = sub, sub.make_context(name, args, parent=ctx)


def test_the_walk_finds_every_command() -> None:
    assert {("apply",), ("plan",), ("serve",), ("state",), ("state", "migrate"), ("logs",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_help_has_pasteable_examples_and_named_documented_options(path: tuple[str, ...]) -> None:
    r = run_cli(*path, "--help")
    assert r.code == 0 and r.stdout.startswith(f"Usage: jobrunner {' '.join(path)}"), r.output
    examples = _examples(r.stdout)
    assert 2 <= len(examples) <= 3, (path, examples)
    assert all(e.startswith(f"jobrunner {' '.join(path)}") for e in examples), examples
    for example in examples:
        _parses(example)
    group: click.Command = cli
    for name in path:
        assert isinstance(group, click.Group)
        group = group.get_command(click.Context(group), name)
    for param in group.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        record = param.get_help_record(click.Context(group))
        assert record is not None and param.help, f"{' '.join(path)} {param.opts[0]}: no help text"
        if param.is_flag:
            continue
        metavar = record[0].split(" ", 1)[1] if " " in record[0] else ""
        # a word that says what to give (`N` for a count is the one letter everyone reads)
        assert (len(metavar) > 1 or metavar == "N") and metavar not in CLICK_DEFAULT_METAVARS, \
            f"{' '.join(path)}: {record[0]}"


def test_the_top_level_help_lists_every_command_with_a_quick_start() -> None:
    r = run_cli("--help")
    assert r.code == 0 and "Quick start" in r.stdout
    for (name,) in (p for p in COMMANDS if len(p) == 1):
        assert re.search(rf"^  {name}\s", r.stdout, re.MULTILINE), name


# --- completion ----------------------------------------------------------------------------


def _complete(shell: str, words: str, cwd: Path) -> list[str]:
    """What `jobrunner` answers when `shell` asks to complete the last word of `words`."""
    env = {**os.environ, "_JOBRUNNER_COMPLETE": f"{shell}_complete", "PYTHONPATH": str(REPO)}
    if shell == "fish":
        env["COMP_WORDS"], env["COMP_CWORD"] = words, words.split(" ")[-1]
    else:
        env["COMP_WORDS"], env["COMP_CWORD"] = words, str(len(words.split(" ")) - 1)
    proc = subprocess.run(
        [sys.executable, "-m", "jobrunner"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    if shell == "fish" and lines and "," in lines[0]:
        # click >= 8.5 answers fish with "type,value<TAB>help", one line each (8.4: like zsh)
        return [line.split("\t")[0] for line in lines if line]
    if shell in ("zsh", "fish"):  # type, value, help, one per line each
        return [f"{lines[i]},{lines[i + 1]}" for i in range(0, len(lines) - 2, 3)]
    return [line for line in proc.stdout.splitlines() if line]  # bash: "type,value"


def _requests(platform: Platform) -> int:
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.token}"}) as c:
        return int(c.get("/_admin/stats").json().get("requests", 0))


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_of_commands_options_paths_and_addresses(shell: str, workspace: Path, platform: Platform) -> None:
    (workspace / "specs").mkdir()
    (workspace / "specs" / "b.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: greet}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  inputs:\n    - {{key: one, text: a}}\n    - {{key: two, text: b}}\n")
    assert run_cli("apply", "--auto-approve", "specs").code == 0
    before = _requests(platform)
    assert "plain,apply" in _complete(shell, "jobrunner ap", workspace)
    assert "plain,--timeout" in _complete(shell, "jobrunner apply --ti", workspace)
    # paths: the shell lists the files itself when told the type
    assert any(c.startswith("file") for c in _complete(shell, "jobrunner validate sp", workspace))
    addresses = {"plain,PredictionBatch/greet", "plain,PredictionBatch/greet[one]", "plain,PredictionBatch/greet[two]"}
    assert set(_complete(shell, "jobrunner logs Pred", workspace)) == addresses
    assert set(_complete(shell, "jobrunner outputs PredictionBatch/greet[t", workspace)) == {
        "plain,PredictionBatch/greet[two]"
    }
    assert set(_complete(shell, "jobrunner apply --target Pred", workspace)) == addresses
    assert set(_complete(shell, "jobrunner state show Pred", workspace)) == addresses
    assert _requests(platform) == before  # completion read the state file, asked no provider
    # outside any workspace: nothing to offer, and no error in the prompt
    assert _complete(shell, "jobrunner logs Pred", workspace.parent) == []
