"""Plan-time checks against the provider: missing training destinations and inputs the version rejects."""
from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_cli

NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"


def training(root: Path, destination: str, order: str) -> None:
    (root / "data.txt").write_text("some text to learn from\n" * 20)
    (root / "t.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Training\nmetadata: {name: t}\nspec:\n  provider: local\n"
        f"  model: jobrunner/ngram\n  version: {NGRAM}\n  destination: {destination}\n"
        f"  input:\n    train_data: {{$file: data.txt}}\n    order: {order}\n")


def test_undeclared_missing_destination_is_a_plan_error(workspace: Path):
    training(workspace, "me/nowhere", "3")
    r = run_cli("plan", "t.yaml")
    assert r.code == 1, r.output
    assert "me/nowhere" in r.stderr and "kind: Model" in r.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists()


def test_input_rejected_by_the_version_schema_is_a_plan_error(workspace: Path):
    (workspace / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Model\nmetadata: {name: dest}\nspec:\n  provider: local\n  owner: me\n"
        "  name: dest\n  visibility: private\n  hardware: cpu\n")
    training(workspace, "me/dest", "99")
    r = run_cli("plan", ".")
    assert r.code == 1, r.output
    assert "t.yaml:" in r.stderr and "order" in r.stderr and "input schema" in r.stderr


def test_invalid_manifests_stop_plan_before_any_request(workspace: Path):
    (workspace / "bad.yaml").write_text("apiVersion: jobrunner/v1\nkind: Training\nmetadata: {name: Bad_Name}\n"
                                        "spec:\n  provider: local\n")
    r = run_cli("plan", ".")
    assert r.code == 1, r.output
    assert "bad.yaml:" in r.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists()


def test_batch_row_rejected_by_a_trained_versions_schema_points_at_its_line(workspace: Path):
    import json

    (workspace / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Model\nmetadata: {name: dest}\nspec:\n  provider: local\n  owner: me\n"
        "  name: dest\n  visibility: private\n  hardware: cpu\n")
    training(workspace, "me/dest", "3")
    assert run_cli("apply", "--auto-approve", ".").code == 0
    version = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]["Training/t"]["outputs"][
        "version"
    ]
    (workspace / "rows.jsonl").write_text('{"key": "a", "prompt": "x"}\n{"key": "b", "prompt": "y", "seed": "nope"}\n')
    (workspace / "b.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
        f"  version: {version}\n  inputs_file: rows.jsonl\n")
    r = run_cli("plan", "b.yaml")
    assert r.code == 1, r.output
    assert "rows.jsonl:2:" in r.stderr and "PredictionBatch/b[b]" in r.stderr and "seed" in r.stderr
    assert "[a]" not in r.stderr


def test_a_version_the_provider_does_not_have_is_a_plan_error(workspace: Path):
    (workspace / "b.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
        f"  version: me/poems:{'0' * 64}\n  inputs:\n    - {{key: a, prompt: x}}\n")
    r = run_cli("plan", ".")
    assert r.code == 1, r.output
    assert f"PredictionBatch/b[a]: version me/poems:{'0' * 64} not found on local" in r.stderr, r.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists()
