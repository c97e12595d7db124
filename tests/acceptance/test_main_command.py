"""The README's main command: apply of specs/examples/ on the local platform, then "No changes."."""
from __future__ import annotations

import json

from tests.acceptance.conftest import copy_examples
from tests.helpers.cli import run_cli


def test_examples_apply_trains_predicts_writes_outputs_then_converges(workspace):
    copy_examples(workspace)
    first = run_cli("apply", "--auto-approve", "specs/examples/")
    assert first.code == 0, first.output
    assert "Apply complete" in first.stdout
    assert "Training/poems-ngram.version = me/poems:" in first.stdout

    rows = [json.loads(line) for line in
            (workspace / "specs/examples/out/poems-eval.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["moon", "dawn", "love", "tyger"]
    assert all(r["status"] == "succeeded" and isinstance(r["output"], str) and r["output"] for r in rows)
    assert rows[0]["input"]["prompt"] == "The moon"

    second = run_cli("apply", "--auto-approve", "specs/examples/")
    assert second.code == 0, second.output
    assert "No changes." in second.stdout

    plan = run_cli("plan", "--detailed-exitcode", "specs/examples/")
    assert plan.code == 0, plan.output

    # A deleted output file is written again from state, without running anything.
    out = workspace / "specs/examples/out/poems-eval.jsonl"
    before = out.read_text()
    out.unlink()
    third = run_cli("apply", "--auto-approve", "specs/examples/")
    assert third.code == 0 and "No changes." in third.stdout, third.output
    assert out.read_text() == before


def test_editing_the_training_reruns_it_and_its_dependent_batch(workspace):
    examples = copy_examples(workspace)
    assert run_cli("apply", "--auto-approve", "specs/examples/").code == 0
    manifest = examples / "poems.yaml"
    manifest.write_text(manifest.read_text().replace("order: 5", "order: 4"))
    plan = run_cli("plan", "--detailed-exitcode", "specs/examples/")
    assert plan.code == 2, plan.output
    assert "Training/poems-ngram" in plan.stdout and "known after apply" in plan.stdout
    r = run_cli("apply", "--auto-approve", "specs/examples/")
    assert r.code == 0, r.output
    state = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]
    training = state["Training/poems-ngram"]
    assert len(training["history"]) == 2
    assert all(len(state[f"PredictionBatch/poems-eval[{k}]"]["history"]) == 2 for k in ("moon", "dawn"))
    assert run_cli("plan", "--detailed-exitcode", "specs/examples/").code == 0
