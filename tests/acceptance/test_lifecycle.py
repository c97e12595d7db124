"""The end-to-end sequence of issue 4 against the real local platform, with the CLI's exit codes.

apply -> re-plan --detailed-exitcode exits 0 -> edit an input -> plan shows a replace, exits 2 ->
apply -> delete a manifest -> plan shows cancel/forget -> a failing job exits 5 and is retried per
`retry` -> a wait timeout exits 6 (the job keeps running) -> destroy cancels it and forgets all.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def batch(name: str, version: str, rows: list[dict], extra: str = "") -> str:
    items = "\n".join(f"    - {json.dumps(r)}" for r in rows)
    return (f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: local\n  version: {version}\n  inputs:\n{items}\n{extra}")


def state(root: Path) -> dict:
    """The addresses state records, as jobrunner reads them (snapshot and journal)."""
    from jobrunner.state.local_file import read_state_json

    return read_state_json(root / ".jobrunner" / "state.json")["addresses"]


def test_apply_replan_edit_remove_fail_timeout_destroy(workspace: Path):
    m = workspace / "manifests"
    m.mkdir()
    (m / "echo.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "hello"}, {"key": "b", "text": "bye"}],
                                       "  output_file: out/greet.jsonl\n"))
    (m / "slow.yaml").write_text(batch("slow", SLEEP, [{"key": "s", "seconds": 30}]))

    # 1. apply everything; the slow job is left running (--no-wait) for the removal step.
    r = run_cli("apply", "--auto-approve", "--target", "PredictionBatch/greet", "manifests")
    assert r.code == 0, r.output
    assert "Apply complete" in r.stdout
    rows = [json.loads(x) for x in (m / "out/greet.jsonl").read_text().splitlines()]
    assert [(x["key"], x["output"]) for x in rows] == [("a", {"text": "hello"}), ("b", {"text": "bye"})]
    r = run_cli("apply", "--auto-approve", "--no-wait", "manifests")
    assert r.code == 0, r.output
    assert state(workspace)["PredictionBatch/slow[s]"]["status"] in ("pending", "running")

    # 2. re-plan of the converged batch: no changes, exit 0.
    r = run_cli("plan", "--detailed-exitcode", "manifests/echo.yaml")
    assert r.code == 0, r.output
    assert "No changes." in r.stdout

    # 3. edit one input: the plan replaces that item only, exit 2.
    (m / "echo.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "hello!"}, {"key": "b", "text": "bye"}],
                                       "  output_file: out/greet.jsonl\n"))
    r = run_cli("plan", "--detailed-exitcode", "manifests/echo.yaml")
    assert r.code == 2, r.output
    assert "PredictionBatch/greet[a]" in r.stdout and "-/+" in r.stdout
    assert "PredictionBatch/greet[b]" not in r.stdout.replace("greet[b]: noop", "")

    # 4. apply it.
    r = run_cli("apply", "--auto-approve", "manifests/echo.yaml")
    assert r.code == 0, r.output
    st = state(workspace)
    assert len(st["PredictionBatch/greet[a]"]["history"]) == 2
    assert st["PredictionBatch/greet[a]"]["outputs"]["output"] == {"text": "hello!"}

    # 5. delete the manifest of the running job: plan says cancel; the terminal batch would be forgotten.
    (m / "slow.yaml").unlink()
    (m / "echo.yaml").unlink()
    r = run_cli("plan", "--detailed-exitcode", "manifests")
    assert r.code == 2, r.output
    assert "PredictionBatch/slow[s]" in r.stdout and "cancel" in r.stdout.lower()
    assert "forget" in r.stdout.lower()
    slow_id = state(workspace)["PredictionBatch/slow[s]"]["remote_id"]
    r = run_cli("apply", "--auto-approve", "manifests")
    assert r.code == 0, r.output
    assert state(workspace) == {}
    # Nothing left to manage there: no manifest and no tracked job is an error, not "No changes".
    r = run_cli("plan", "--detailed-exitcode", "manifests")
    assert r.code == 1, r.output
    assert "No manifests found under" in r.stderr

    # 6. a failing job: exit 5, retried up to retry.max_attempts.
    (m / "fail.yaml").write_text(batch("fails", SLEEP, [{"key": "f", "seconds": 0.1, "fail": True}],
                                       "  retry: {max_attempts: 2}\n"))
    r = run_cli("apply", "--auto-approve", "manifests")
    assert r.code == 5, r.output
    st = state(workspace)["PredictionBatch/fails[f]"]
    assert st["status"] == "failed" and st["attempts"] == 2 and len(st["history"]) == 2
    r = run_cli("plan", "--detailed-exitcode", "manifests")
    # No attempts left: nothing to do until the manifest changes, and the job needs attention (5).
    assert r.code == 5, r.output
    assert "No changes." in r.stdout and "PredictionBatch/fails[f]" in r.stdout
    (m / "fail.yaml").unlink()

    # 7. a wait timeout: exit 6, the job keeps running; a later apply resumes waiting.
    (m / "slow.yaml").write_text(batch("slow", SLEEP, [{"key": "s", "seconds": 30}]))
    r = run_cli("apply", "--auto-approve", "--timeout", "1s", "manifests")
    assert r.code == 6, r.output
    assert state(workspace)["PredictionBatch/slow[s]"]["status"] in ("pending", "running")
    r = run_cli("plan", "manifests")
    assert r.code == 0 and "slow[s]" in r.stdout
    r = run_cli("apply", "--timeout", "1s", "manifests")  # only waiting: no confirmation needed
    assert r.code == 6, r.output
    assert len(state(workspace)["PredictionBatch/slow[s]"]["history"]) == 1, "resumed, not re-created"

    # 8. destroy cancels the running job and forgets every address.
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output
    assert state(workspace) == {}
    assert slow_id  # the first slow job was canceled by step 5
