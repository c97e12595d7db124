"""Saved plans, confirmation, import, status, logs, outputs and state commands, end to end."""
from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.helpers.cli import run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def write(root: Path, name: str, rows: list[dict], version: str = ECHO, extra: str = "") -> Path:
    items = "\n".join(f"    - {json.dumps(r)}" for r in rows)
    path = root / f"{name}.yaml"
    path.write_text(f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: {name}}}\nspec:\n"
                    f"  provider: local\n  version: {version}\n  inputs:\n{items}\n{extra}")
    return path


def test_saved_plan_applies_exactly_and_a_stale_one_exits_3(workspace: Path):
    write(workspace, "b", [{"key": "x", "text": "one"}])
    r = run_cli("plan", "--out", "p.json", "b.yaml")
    assert r.code == 0, r.output
    saved = json.loads((workspace / "p.json").read_text())
    assert saved["changes"][0]["address"] == "PredictionBatch/b[x]" and saved["changes"][0]["action"] == "create"
    assert "r8_" not in (workspace / "p.json").read_text()
    r = run_cli("apply", "p.json")
    assert r.code == 0, r.output
    assert "Apply complete: 1 created" in r.stdout

    write(workspace, "b", [{"key": "x", "text": "two"}])
    assert run_cli("plan", "--out", "p2.json", "b.yaml").code == 0
    assert run_cli("apply", "--auto-approve", "b.yaml").code == 0  # the world moves on
    r = run_cli("apply", "p2.json")
    assert r.code == 3, r.output
    assert "PredictionBatch/b[x]" in r.stderr and "stale" in r.stderr


def test_apply_without_a_terminal_or_auto_approve_is_an_error(workspace: Path):
    write(workspace, "c", [{"key": "x", "text": "hi"}])
    r = run_cli("apply", "c.yaml")
    assert r.code == 1
    assert "--auto-approve" in r.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists() or \
        json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"] == {}


def test_import_adopts_a_matching_job_and_refuses_a_different_one(workspace: Path, platform):
    write(workspace, "imp", [{"key": "k", "text": "imported"}])
    headers = {"Authorization": f"Bearer {platform.token}"}
    made = httpx.post(f"{platform.url}/v1/predictions", headers=headers, timeout=10,
                      json={"version": ECHO, "input": {"text": "imported"}}).json()
    other = httpx.post(f"{platform.url}/v1/predictions", headers=headers, timeout=10,
                       json={"version": ECHO, "input": {"text": "something else"}}).json()
    r = run_cli("import", "PredictionBatch/imp[k]", other["id"])
    assert r.code == 1 and "does not match" in r.stderr
    r = run_cli("import", "PredictionBatch/imp[k]", made["id"])
    assert r.code == 0, r.output
    r = run_cli("apply", "--auto-approve", "imp.yaml")  # waits for it; creates nothing
    assert r.code == 0, r.output
    assert "0 created" in r.stdout or "No changes." in r.stdout
    r = run_cli("plan", "--detailed-exitcode", "imp.yaml")
    assert r.code == 0, r.output


def test_status_logs_outputs_and_state_commands(workspace: Path):
    write(workspace, "s", [{"key": "z", "seconds": 0.6, "log_lines": 3}], version=SLEEP)
    assert run_cli("apply", "--auto-approve", "--no-wait", "s.yaml").code == 0
    r = run_cli("logs", "--follow", "PredictionBatch/s[z]")
    assert r.code == 0, r.output
    assert "100%|##########| 3/3 [" in r.stdout
    r = run_cli("status")
    assert r.code == 0 and "PredictionBatch/s[z]" in r.stdout and "succeeded" in r.stdout, r.output
    r = run_cli("status", "--format", "json")
    row = json.loads(r.stdout)["addresses"][0]
    assert row["status"] == "succeeded" and row["attempts"] == 1
    r = run_cli("outputs", "--format", "json")
    assert json.loads(r.stdout)["outputs"]["PredictionBatch/s[z]"]["output"] == {"slept": 0.6}
    assert run_cli("state", "list").stdout.split() == ["PredictionBatch/s[z]"]
    shown = json.loads(run_cli("state", "show", "PredictionBatch/s[z]").stdout)
    assert shown["history"][0]["remote_id"] == shown["remote_id"]
    assert run_cli("state", "rm", "PredictionBatch/s").code == 0
    assert run_cli("state", "list").stdout.strip() == ""
    r = run_cli("state", "show", "PredictionBatch/s[z]")
    assert r.code == 1 and "not in state" in r.stderr
    assert run_cli("state", "unlock").code == 0


def test_secret_named_inputs_never_reach_state_outputs_or_files(workspace: Path):
    write(workspace, "sec", [{"key": "k", "text": "hi", "api_key": "sk-verysecretvalue"}],
          extra="  output_file: out.jsonl\n")
    r = run_cli("apply", "--auto-approve", "sec.yaml")
    assert r.code == 0, r.output
    assert "sk-verysecretvalue" not in r.output
    for path in (workspace / ".jobrunner" / "state.json", workspace / "out.jsonl"):
        assert "sk-verysecretvalue" not in path.read_text(), path
    assert "sk-verysecretvalue" not in run_cli("outputs", "--format", "json").stdout
    assert "sk-verysecretvalue" not in run_cli("plan", "--format", "json", "sec.yaml").stdout


def test_a_locked_state_exits_4_naming_the_holder(workspace: Path):
    from jobrunner.reconcile.planning import open_workspace

    write(workspace, "l", [{"key": "k", "text": "hi"}])
    ws = open_workspace(workspace)
    with ws.store.lock("apply"):
        r = run_cli("apply", "--auto-approve", "l.yaml")
    assert r.code == 4, r.output
    assert "apply" in r.stderr
