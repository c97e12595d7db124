"""The README's main command: apply of specs/examples/ on the local platform, then "No changes."."""
from __future__ import annotations

import json

from tests.acceptance.conftest import copy_examples, run_cli


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
