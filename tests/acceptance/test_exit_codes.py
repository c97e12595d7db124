"""The exit-code table of docs/cli.md (and README.md), checked row by row with the real CLI.

Each row of `jobrunner.exitcodes.TABLE` has a test that provokes it on the real local platform; the
docs' tables must list exactly those rows. Usage errors exit 1 for every command and subcommand
(click's default of 2 would read as "changes present" in CI). A job that failed, was canceled
outside jobrunner or is blocked keeps `apply` at 5 run after run, and `plan --detailed-exitcode`
says so with 5 when nothing else would change.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import pytest

from jobrunner.exitcodes import TABLE, ExitCode
from tests.acceptance.conftest import REPO
from tests.helpers.cli import run_cli, start_process
from tests.platform_fixture import serve_platform

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"

# Rows a test below provokes (the docs-table test checks every row of TABLE is here).
COVERED: set[int] = set()


def covers(code: ExitCode):
    COVERED.add(int(code))
    return lambda fn: fn


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def nap_batch(root: Path, seconds: float, output_file: str | None = None) -> None:
    """nap.yaml: one `jobrunner/sleep` item `k` that runs for `seconds`."""
    out = f"\n          output_file: {output_file}" if output_file else ""
    write(root, "nap.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: nap}}
        spec:
          provider: local
          version: {SLEEP}
          inputs:
            - {{key: k, seconds: {seconds}}}{out}
        """)


def echo_batch(root: Path, name: str = "b", rows: str = "- {key: a, x: 1}") -> None:
    write(root, f"{name}.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: {name}}}
        spec:
          provider: local
          version: {ECHO}
          inputs:
            {rows}
        """)


def failing_pipeline(root: Path) -> None:
    """A batch whose only item fails, and a dependent batch that is blocked by it."""
    write(root, "fail.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: bad}}
        spec:
          provider: local
          version: {SLEEP}
          inputs:
            - {{key: k, seconds: 0, fail: true}}
        ---
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: after}}
        spec:
          provider: local
          version: {ECHO}
          inputs:
            - {{key: k, n: "${{PredictionBatch.bad.output.count}}"}}
        """)


def state(root: Path) -> dict:
    """The addresses state records, as jobrunner reads them (snapshot and journal)."""
    from jobrunner.state.local_file import read_state_json

    return read_state_json(root / ".jobrunner" / "state.json")["addresses"]


# --- 1: usage errors, every command ---------------------------------------------------------------


def _all_commands() -> list[list[str]]:
    """Every command and subcommand path of the real CLI (so a command added later is covered too)."""
    from jobrunner.cli import cli

    ctx = click.Context(cli)
    out: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None:
                continue
            out.append(prefix + [name])
            if isinstance(cmd, click.Group):
                walk(cmd, prefix + [name])

    walk(cli, [])
    return out


def test_every_command_is_walked():
    names = {" ".join(c) for c in _all_commands()}
    assert {"plan", "apply", "destroy", "validate", "status", "logs", "outputs", "import", "state rm",
            "state list", "state migrate", "serve", "schema"} <= names


@covers(ExitCode.ERROR)
@pytest.mark.parametrize("command", [" ".join(c) for c in _all_commands()])
def test_an_unknown_option_exits_1_for_every_command(workspace: Path, command: str):
    r = run_cli(*command.split(), "--no-such-option")
    assert r.code == 1, (command, r.output)
    assert "No such option" in r.stderr and "--no-such-option" in r.stderr and "Traceback" not in r.output
    assert not (workspace / ".jobrunner").exists()  # nothing ran


@pytest.mark.parametrize("args, says", [
    (["plan", "--detailed-exitcode", "--bogus"], "No such option"),
    (["plan", "--format", "yaml"], "'yaml' is not one of"),
    (["apply", "--parallelism", "0"], "Invalid value for '--parallelism'"),
    (["logs"], "Missing argument 'ADDRESS'"),
    (["state", "rm"], "Missing argument"),
    (["state", "show"], "Missing argument 'ADDRESS'"),
    (["bogus"], "No such command 'bogus'"),
    (["state", "bogus"], "No such command 'bogus'"),
    ([], "Usage:"),
])
def test_usage_errors_exit_1_not_2(workspace: Path, args: list[str], says: str):
    r = run_cli(*args)
    assert r.code == 1, r.output
    assert says in r.output and "Traceback" not in r.output


def test_help_and_version_exit_0(workspace: Path):
    assert run_cli("--help").code == 0
    assert run_cli("plan", "--help").code == 0
    assert run_cli("--version").code == 0


@covers(ExitCode.ERROR)
def test_destroy_target_of_an_unknown_address_is_an_error_like_apply(workspace: Path):
    echo_batch(workspace)
    assert run_cli("apply", "--auto-approve", "b.yaml").code == 0
    for command in (["apply", "--auto-approve"], ["destroy", "--auto-approve"]):
        r = run_cli(*command, "--target", "Training/nope")
        assert r.code == 1, r.output
        assert "--target Training/nope: no such address" in r.stderr and "hint:" in r.stderr
    assert state(workspace)["PredictionBatch/b[a]"]["status"] == "succeeded"  # nothing was touched
    r = run_cli("destroy", "--auto-approve", "--target", "PredictionBatch/b")
    assert r.code == 0 and state(workspace) == {}, r.output


# --- 0, 2: success and changes ------------------------------------------------------------------


@covers(ExitCode.OK)
@covers(ExitCode.CHANGES)
def test_changes_then_success_then_no_changes(workspace: Path):
    echo_batch(workspace)
    assert run_cli("plan", "b.yaml").code == 0
    assert run_cli("plan", "--detailed-exitcode", "b.yaml").code == 2
    r = run_cli("apply", "--auto-approve", "b.yaml")
    assert r.code == 0 and "Apply complete" in r.stdout, r.output
    r = run_cli("plan", "--detailed-exitcode", "b.yaml")
    assert r.code == 0 and "No changes. Your jobs match the manifests." in r.stdout, r.output
    assert run_cli("apply", "--auto-approve", "b.yaml").code == 0


# --- 3: stale saved plan -----------------------------------------------------------------------


@covers(ExitCode.STALE_PLAN)
def test_a_stale_saved_plan_exits_3(workspace: Path):
    echo_batch(workspace)
    assert run_cli("plan", "--out", "p.json", "b.yaml").code == 0
    echo_batch(workspace, rows="- {key: a, x: 2}")
    r = run_cli("apply", "p.json")
    assert r.code == 3, r.output
    assert "PredictionBatch/b[a]" in r.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists() or "PredictionBatch/b[a]" not in state(workspace)


# --- 4: locked -----------------------------------------------------------------------------------


@covers(ExitCode.LOCKED)
def test_a_locked_state_exits_4(workspace: Path):
    echo_batch(workspace)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from jobrunner.reconcile.planning import open_workspace\n"
         "with open_workspace().store.lock('apply'):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.readline()\n"],
        cwd=workspace, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = run_cli("apply", "--auto-approve", "b.yaml")
        assert r.code == 4, r.output
    finally:
        holder.communicate("\n", timeout=30)


# --- 5: needs attention, run after run ----------------------------------------------------------


@covers(ExitCode.NEEDS_ATTENTION)
def test_a_failed_job_and_its_blocked_dependent_keep_apply_at_5(workspace: Path):
    failing_pipeline(workspace)
    r = run_cli("apply", "--auto-approve", "fail.yaml")
    assert r.code == 5, r.output
    assert "PredictionBatch/bad[k]" in r.stderr and "hint:" in r.stderr
    for _ in range(2):  # "re-run apply until it exits 0" never reports success with a failed job
        r = run_cli("apply", "--auto-approve", "fail.yaml")
        assert r.code == 5, r.output
        assert "PredictionBatch/bad[k]" in r.stderr and "need" in r.stderr and "attention" in r.stderr
        assert "PredictionBatch/after[k]" in r.output
        assert "Do you want to perform" not in r.output  # nothing to approve: the dependent is skipped
    r = run_cli("plan", "--detailed-exitcode", "fail.yaml")
    assert r.code == 5, r.output
    assert run_cli("plan", "fail.yaml").code == 0  # without --detailed-exitcode a plan that ran is 0
    st = state(workspace)
    assert st["PredictionBatch/bad[k]"]["status"] == "failed" and st["PredictionBatch/bad[k]"]["attempts"] == 1
    assert "PredictionBatch/after[k]" not in st or not st["PredictionBatch/after[k]"]["remote_id"]


@covers(ExitCode.NEEDS_ATTENTION)
def test_a_failed_job_alone_keeps_apply_and_plan_at_5(workspace: Path):
    write(workspace, "one.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: one}}
        spec:
          provider: local
          version: {SLEEP}
          inputs:
            - {{key: k, seconds: 0, fail: true}}
        """)
    assert run_cli("apply", "--auto-approve", "one.yaml").code == 5
    r = run_cli("apply", "--auto-approve", "one.yaml")
    assert r.code == 5, r.output
    assert "No changes." in r.stdout and "1 job needs attention" in r.stderr
    assert "PredictionBatch/one[k]: " in r.stderr and "failed" in r.stderr and "retry.max_attempts" in r.stderr
    assert run_cli("plan", "--detailed-exitcode", "one.yaml").code == 5


def test_changes_win_over_attention_in_plan_but_apply_still_exits_5(workspace: Path):
    failing_pipeline(workspace)
    assert run_cli("apply", "--auto-approve", "fail.yaml").code == 5
    echo_batch(workspace)
    assert run_cli("plan", "--detailed-exitcode").code == 2
    r = run_cli("apply", "--auto-approve")
    assert r.code == 5, r.output
    assert state(workspace)["PredictionBatch/b[a]"]["status"] == "succeeded"
    assert "PredictionBatch/bad[k]" in r.stderr


def test_a_job_canceled_outside_jobrunner_keeps_apply_at_5(workspace: Path, platform):
    nap_batch(workspace, 30)
    assert run_cli("apply", "--auto-approve", "--no-wait", "nap.yaml").code == 0
    remote_id = state(workspace)["PredictionBatch/nap[k]"]["remote_id"]
    with platform.client() as c:
        c.post(f"/v1/predictions/{remote_id}/cancel").raise_for_status()
    for _ in range(2):
        r = run_cli("apply", "--auto-approve", "nap.yaml")
        assert r.code == 5, r.output
        assert "PredictionBatch/nap[k]" in r.stderr and "canceled" in r.stderr


def test_jobs_failed_by_a_platform_restart_keep_apply_at_5(tmp_path: Path, monkeypatch):
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.chdir(root)
    token = "r8_restart_" + os.urandom(4).hex()
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", token)
    for var in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "platform"
    nap_batch(root, 60, output_file="out/nap.jsonl")
    with serve_platform(data, token) as live:
        (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {live.url}\n")
        assert run_cli("apply", "--auto-approve", "--no-wait", "nap.yaml").code == 0
        remote_id = state(root)["PredictionBatch/nap[k]"]["remote_id"]
        deadline = time.monotonic() + 30
        with live.client() as c:
            while c.get(f"/v1/predictions/{remote_id}").json()["status"] != "processing":
                assert time.monotonic() < deadline
                time.sleep(0.1)
    with serve_platform(data, token) as live:  # the restart marks the running job failed
        (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {live.url}\n")
        for _ in range(2):
            r = run_cli("apply", "--auto-approve", "nap.yaml")
            assert r.code == 5, r.output
            assert "PredictionBatch/nap[k]" in r.stderr
        assert state(root)["PredictionBatch/nap[k]"]["status"] == "failed"
        rows = [json.loads(line) for line in (root / "out" / "nap.jsonl").read_text().splitlines()]
        assert [row["status"] for row in rows] == ["failed"]


# --- 6: wait timeout -----------------------------------------------------------------------------


@covers(ExitCode.WAIT_TIMEOUT)
def test_apply_timeout_exits_6_and_the_job_keeps_running(workspace: Path):
    nap_batch(workspace, 20)
    r = run_cli("apply", "--auto-approve", "--timeout", "1s", "nap.yaml")
    assert r.code == 6, r.output
    assert state(workspace)["PredictionBatch/nap[k]"]["status"] in ("pending", "running")
    assert run_cli("destroy", "--auto-approve").code == 0


# --- 130: Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.slow  # signals a subprocess
@covers(ExitCode.INTERRUPTED)
def test_ctrl_c_exits_130(workspace: Path):
    nap_batch(workspace, 20)
    proc = start_process(["apply", "--auto-approve", "nap.yaml"], workspace, {**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if state(workspace).get("PredictionBatch/nap[k]", {}).get("remote_id"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert run_cli("destroy", "--auto-approve").code == 0


# --- the documented table ----------------------------------------------------------------------


def _doc_table(path: Path) -> dict[int, str]:
    text = path.read_text(encoding="utf-8")
    start = text.index("| code | meaning |")
    rows: dict[int, str] = {}
    for line in text[start:].splitlines()[2:]:
        m = re.match(r"^\| (\d+) \| (.+) \|$", line)
        if not m:
            break
        rows[int(m[1])] = m[2]
    return rows


@pytest.mark.parametrize("doc", ["docs/cli.md", "README.md"])
def test_the_documented_table_is_the_table_the_code_decides(doc: str):
    rows = _doc_table(REPO / doc)
    assert list(rows) == [int(code) for code, _ in TABLE]
    for code, meaning in TABLE:
        assert rows[int(code)] == meaning, (doc, code)


def test_every_row_of_the_table_has_a_test():
    assert {int(code) for code, _ in TABLE} == COVERED

