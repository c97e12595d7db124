"""The real jobrunner CLI for tests: in-process exactly as the console script runs it, or as a
separate process that can be killed, and a workspace that points the `local` provider at a live
platform.

One copy for every suite (acceptance, reliability, model, unit), so a change to how the CLI is
driven (its entry point, how the exit code is read) is made once.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

# Variables that would point a test's CLI run at real credentials, another state store, a crash
# point or fault knobs; every workspace fixture clears them.
INHERITED_ENV = ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL",
                 "JOBRUNNER_TEST_CRASH_AT", "JOBRUNNER_LOCAL_FAULTS")


@dataclass
class Result:
    """What one `jobrunner` run printed and its exit code."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, input: str | None = None) -> Result:
    """`jobrunner ARGS` in-process, exactly as the console script runs it (cwd and env as set)."""
    from jobrunner.cli import main

    runner = CliRunner()
    code = 0
    with runner.isolation(input=input) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Result(code, stdout, stderr)


def run_process(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """`jobrunner ARGS` as a separate process run to its end (for SIGKILL and lock tests); `env`
    defaults to this process's environment."""
    proc = subprocess.run([sys.executable, "-m", "jobrunner", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=timeout, text=True)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_process(args: list[str], cwd: Path, env: dict[str, str], *,
                  merge_stderr: bool = False) -> subprocess.Popen[str]:
    """`jobrunner ARGS` started as a separate process and left running, for tests that signal or
    race it; stdout (and stderr, or stderr merged into stdout) are text pipes."""
    return subprocess.Popen([sys.executable, "-m", "jobrunner", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)


def write_workspace(root: Path, platform_url: str) -> Path:
    """A workspace at `root` whose `jobrunner.yaml` points the `local` provider at `platform_url`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {platform_url}\n", encoding="utf-8")
    return root
