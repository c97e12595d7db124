"""`--json` as a script consumes it: real apply/destroy runs on the local platform, each line checked
against docs/json-events.schema.json, and one `format_version` across every JSON document.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.acceptance.conftest import REPO, copy_examples
from tests.acceptance.test_exit_codes import SLEEP, write
from tests.helpers.cli import run_cli, start_process

SCHEMA = json.loads((REPO / "docs" / "json-events.schema.json").read_text(encoding="utf-8"))


def events_of(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line is one event that the documented schema accepts, with no undeclared field."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    defs = SCHEMA["definitions"]
    events = []
    for line in stdout.splitlines():
        event = json.loads(line)
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, f"{line}\n{errors[0]}"
        declared = set(defs["common"]["properties"]) | set(defs[event["type"]]["properties"])
        assert set(event) <= declared, f"undeclared fields {set(event) - declared} in {line}"
        events.append(event)
    return events


def flaky_batch(root: Path) -> None:
    """Item `ok` succeeds; item `bad` fails on both of its two attempts (a retry event), quoting a token."""
    write(root, "flaky.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: flaky}}
        spec:
          provider: local
          version: {SLEEP}
          retry: {{max_attempts: 2}}
          inputs:
            - {{key: ok, seconds: 0.1}}
            - {{key: bad, seconds: 0.1, fail: true, message: "r8_leakedtoken0123456789"}}
        """)


def test_apply_json_streams_schema_valid_events_a_script_can_follow(workspace: Path, monkeypatch) -> None:
    copy_examples(workspace)
    flaky_batch(workspace)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_leakedtoken0123456789")
    r = run_cli("apply", "--json", "--auto-approve")
    assert r.code == 5, r.output
    events = events_of(r.stdout)
    types = [e["type"] for e in events]
    assert types[0] == "plan" and types[-1] == "summary" and types.count("summary") == 1
    plan = events[0]
    assert plan["summary"]["create"] == 8 and plan["has_changes"] is True
    # every job that was created has its create event, and the batch item that failed twice shows
    # one retry and one error, with the model's message (scrubbed of the token it quoted)
    created = {e["address"] for e in events if e["type"] == "create"}
    assert {"Training/poems-ngram", "PredictionBatch/poems-eval[moon]", "PredictionBatch/flaky[ok]",
            "PredictionBatch/flaky[bad]", "Model/poems"} <= created
    retries = [e for e in events if e["type"] == "retry"]
    assert [(e["address"], e["attempt"], e["max_attempts"]) for e in retries] == [("PredictionBatch/flaky[bad]", 2, 2)]
    errors = [e for e in events if e["type"] == "error"]
    assert [(e["address"], e["status"]) for e in errors] == [("PredictionBatch/flaky[bad]", "failed")]
    assert "failed on request" in errors[0]["message"]
    assert "r8_leakedtoken0123456789" not in r.stdout + r.stderr
    # a create is followed by the job's terminal status, in order
    trained = [e for e in events if e.get("address") == "Training/poems-ngram" and e["type"] != "output"]
    assert trained[0]["type"] == "create" and trained[0]["status"] == "pending"
    assert trained[-1]["type"] == "status" and trained[-1]["status"] == "succeeded"
    outputs = {e["address"]: e["outputs"] for e in events if e["type"] == "output"}
    assert outputs["Training/poems-ngram"]["version"]
    assert "PredictionBatch/flaky[bad]" not in outputs
    summary = events[-1]
    assert summary["exit_code"] == 5 and summary["created"] == 9  # 8 jobs, one of them twice
    assert summary["outcomes"]["failed"] == 1 and summary["message"].startswith("Apply finished:")
    assert [f["address"] for f in summary["failures"]] == ["PredictionBatch/flaky[bad]"]
    assert summary["files_written"] == ["specs/examples/out/poems-eval.jsonl"]
    assert "Traceback" not in r.stderr and "PredictionBatch/flaky[bad]" in r.stderr  # the failure, for people

    again = run_cli("apply", "--json", "--auto-approve", "specs/examples")
    assert again.code == 0, again.output
    events = events_of(again.stdout)
    assert [e["type"] for e in events] == ["plan", "summary"] and events[1]["exit_code"] == 0

    gone = run_cli("destroy", "--json", "--auto-approve")
    assert gone.code == 0, gone.output
    events = events_of(gone.stdout)
    assert events[0]["type"] == "plan" and events[-1]["type"] == "summary"
    assert all(e["operation"] == "destroy" for e in events)
    assert {e["address"] for e in events if e.get("status") == "forgotten"} >= {"Training/poems-ngram",
                                                                               "PredictionBatch/flaky[ok]"}


def test_json_needs_auto_approve_and_every_document_has_one_format_version(workspace: Path) -> None:
    copy_examples(workspace)
    r = run_cli("apply", "--json")
    assert r.code == 1 and "--auto-approve" in r.stderr and r.stdout == ""
    for args in (["validate", "--json"], ["plan", "--json"], ["status", "--json"], ["outputs", "--json"],
                 ["plan", "--format", "json"], ["status", "--format", "json"]):
        r = run_cli(*args)
        assert r.code == 0, (args, r.output)
        assert json.loads(r.stdout)["format_version"] == "1.0", args
    r = run_cli("plan", "--json", "--format", "markdown")
    assert r.code == 1 and "two formats" in r.stderr


@pytest.mark.slow  # waits for a training's progress
def test_an_emissary_trainings_reported_progress_is_streamed(workspace: Path, platform, monkeypatch) -> None:
    import httpx

    monkeypatch.setenv("EMISSARY_SERVER_URL", platform.url)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", platform.token)
    project = httpx.post(f"{platform.url}/v1/projects", json={"name": "p"}, headers={"X-API-Key": platform.token},
                         timeout=10).json()
    (workspace / "data").mkdir()
    (workspace / "data" / "train.jsonl").write_text(
        "\n".join(json.dumps({"text": f"line {i}: the moon over the quiet sea"}) for i in range(40)) + "\n")
    (workspace / "ft.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Training\nmetadata: {name: ft}\nspec:\n  provider: emissary\n"
        f"  project_id: {project['id']}\n  base_model: jobrunner-ngram\n"
        "  train_dataset_id: {$file: data/train.jsonl}\n  train_test_split_ratio: 0.2\n"
        "  parameters: {order: 3, steps: 10, step_seconds: 0.4}\n")
    r = run_cli("apply", "--json", "--auto-approve", "ft.yaml")
    assert r.code == 0, r.output
    events = events_of(r.stdout)
    seen = [e["progress"] for e in events if e["type"] == "status" and "progress" in e]
    assert seen and seen == sorted(seen) and any(0 < p < 100 for p in seen), seen
    assert events[-2]["type"] == "output" and events[-1]["exit_code"] == 0


@pytest.mark.slow  # signals a subprocess
def test_a_first_ctrl_c_still_ends_the_stream_with_a_summary(workspace: Path, platform) -> None:
    import os
    import signal

    write(workspace, "nap.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: nap}}
        spec:
          provider: local
          version: {SLEEP}
          inputs:
            - {{key: k, seconds: 30}}
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": platform.token}
    proc = start_process(["apply", "--json", "--auto-approve"], workspace, env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # read until the job exists, then interrupt once
            lines.append(line)
            if json.loads(line)["type"] == "create":
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    events = events_of("".join(lines) + rest)
    assert proc.returncode == 130
    assert any(e["type"] == "note" and "Interrupt received" in e["message"] for e in events)
    summary = events[-1]
    assert summary["type"] == "summary" and summary["interrupted"] is True and summary["exit_code"] == 130
    assert summary["outcomes"] == {"running": 1}  # left running on the platform, recorded in state
