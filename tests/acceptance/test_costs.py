"""Costs end to end on the real local platform: durations measured by a first apply show in the next
plan (text, Markdown, JSON), and a workspace `policy:` refuses over-budget plans and applies (exit 1)
unless `--allow-over-budget`, which a saved plan records."""
from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.conftest import copy_examples, run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"


def echo_batch(root: Path, rows: int, extra: str = "") -> None:
    inputs = "".join(f"    - {{key: k{i}, text: row {i}}}\n" for i in range(rows))
    (root / "b.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
        f"  version: jobrunner/echo:{ECHO}\n{extra}  inputs:\n{inputs}")


def configure(root: Path, text: str) -> None:
    with (root / "jobrunner.yaml").open("a", encoding="utf-8") as fh:
        fh.write(text)


def test_plan_after_a_first_apply_shows_measured_durations(workspace: Path):
    examples = copy_examples(workspace)
    first = run_cli("plan", ".")
    assert first.code == 0, first.output
    assert "Training/poems-ngram  (new job)  [duration unknown, $0.00]" in first.stdout  # local: free
    assert "unknown: version known only after apply and no estimate.duration" in first.stdout
    assert run_cli("apply", "--auto-approve", ".").code == 0

    manifest = examples / "poems.yaml"
    manifest.write_text(manifest.read_text().replace(
        '    - {key: tyger, prompt: "Tyger", seed: 4}\n',
        '    - {key: tyger, prompt: "Tyger", seed: 4}\n    - {key: rose, prompt: "O Rose", seed: 5}\n'))
    text = run_cli("plan", ".")
    assert text.code == 0, text.output
    line = next(ln for ln in text.stdout.splitlines() if "PredictionBatch/poems-eval[rose]" in ln)
    assert "[~" in line and "$0.00]" in line and "unknown" not in line
    assert "median of 4 runs of version" in text.stdout
    assert "Estimated duration and cost" in text.stdout

    markdown = run_cli("plan", "--format", "markdown", ".").stdout
    assert markdown.index("#### Estimated cost") < markdown.index("| create |")
    assert "| `PredictionBatch/poems-eval` | 1 |" in markdown

    # A training of the same base version: its duration is the first one's measured run time.
    manifest.write_text(manifest.read_text().replace("    order: 5\n", "    order: 4\n"))
    retrain = run_cli("plan", ".")
    line = next(ln for ln in retrain.stdout.splitlines() if ln.startswith("-/+ Training/poems-ngram"))
    assert "[~" in line and "duration unknown" not in line, retrain.stdout
    assert "median of 1 run of version a3c8c00c979c in state" in retrain.stdout
    manifest.write_text(manifest.read_text().replace("    order: 4\n", "    order: 5\n"))

    doc = json.loads(run_cli("plan", "--format", "json", ".").stdout)
    rose = next(c for c in doc["changes"] if c["address"] == "PredictionBatch/poems-eval[rose]")
    assert rose["estimate"]["basis"] == "measured" and rose["estimate"]["seconds"] > 0
    assert rose["estimate"]["usd"] == 0.0 and rose["estimate"]["hardware"] == "local"
    assert doc["estimate"]["total"]["jobs"] == 1 and doc["estimate"]["creates"] == 1


def test_policy_refuses_too_many_creates_and_the_flag_is_recorded_in_the_saved_plan(workspace: Path):
    configure(workspace, "policy:\n  max_creates_per_apply: 2\n")
    echo_batch(workspace, 3)
    plan = run_cli("plan", ".")
    assert plan.code == 1, plan.output
    assert "PredictionBatch/echo[k2]" in plan.stdout  # the plan is shown, then refused
    assert "the plan creates 3 jobs; policy.max_creates_per_apply is 2" in plan.stderr
    assert "--allow-over-budget" in plan.stderr and "Traceback" not in plan.output

    apply = run_cli("apply", "--auto-approve", ".")
    assert apply.code == 1 and "policy.max_creates_per_apply is 2" in apply.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists()  # nothing was created

    saved = run_cli("plan", "--allow-over-budget", "--out", "plan.json", ".")
    assert saved.code == 0, saved.output
    assert "Over budget, allowed by --allow-over-budget:" in saved.stdout
    document = json.loads((workspace / "plan.json").read_text())
    assert document["allow_over_budget"] is True and document["plan"]["estimate"]["allow_over_budget"] is True
    applied = run_cli("apply", "plan.json")
    assert applied.code == 0, applied.output
    assert "3 created" in applied.stdout


def test_cost_policy_refuses_with_the_numbers_and_unknown_costs_by_name(workspace: Path):
    # The local platform is free; a price for it (a chargeback rate) makes its jobs cost something.
    configure(workspace, "prices:\n  local: 0.5\npolicy:\n  max_cost_per_apply: 10\n")
    echo_batch(workspace, 3, extra="  estimate: {duration: 10s}\n")
    over = run_cli("plan", ".")
    assert over.code == 1, over.output
    assert "the estimated cost is $15.00; policy.max_cost_per_apply is $10.00" in over.stderr
    assert "[~10s, $5.00]" in over.stdout

    echo_batch(workspace, 3)  # no hint and no history: its cost is unknown
    unknown = run_cli("plan", ".")
    assert unknown.code == 1, unknown.output
    assert "the cost of PredictionBatch/echo (3 jobs) is unknown" in unknown.stderr
    assert "estimate: {duration: 30s, hardware: gpu-t4}" in unknown.stderr
