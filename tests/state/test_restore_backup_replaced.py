"""A restored backup that predates a *replace*: the replacing job made since is adopted, not run twice.

Found by the model-based test (`python bench/soak_model.py --seed 1001 --steps 47`): a batch row's
input changed, apply replaced its job, the state file was then damaged and restored from a backup
taken before that apply. The backup still records the row's old job at the old spec, so the next
apply planned the same replace again and created a second job identical to the one already made.
End to end here: real CLI, real local platform, the platform's own listing counted.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.reliability.conftest import platform, workspace  # noqa: F401  (fixtures)
from tests.reliability.harness import ECHO, NGRAM, Platform, apply_until_converged, clean_env, load_state, run_cli

# A Model, an n-gram Training into it, and a batch whose version is the training's output: the
# batch's spec is only complete once the training's output is known.
TRAINED = """apiVersion: jobrunner/v1
kind: Model
metadata: {{name: dest}}
spec: {{provider: local, owner: me, name: {model}, visibility: private, hardware: cpu}}
---
apiVersion: jobrunner/v1
kind: Training
metadata: {{name: t}}
spec:
  provider: local
  model: jobrunner/ngram
  version: {ngram}
  destination: me/{model}
  input: {{train_data: "the moon and the sun and the stars {data}", order: 2}}
"""


def _manifest(root: Path, text: str, *, trained: str | None = None, data: str = "") -> None:
    version = '"${Training.t.output.version}"' if trained else ECHO
    head = TRAINED.format(model=trained, ngram=NGRAM, data=data) + "---\n" if trained else ""
    (root / "jobs.yaml").write_text(
        head + "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
        f"  version: {version}\n  inputs:\n    - {{key: a, prompt: {text}, max_tokens: 4, seed: 1}}\n"
        "    - {key: z, prompt: same, max_tokens: 4, seed: 1}\n",
        encoding="utf-8")


def _jobs_for(live: Platform, text: str, version: str | None = None) -> list[str]:
    return [j["id"] for j in live.jobs("predictions") if (j.get("input") or {}).get("prompt") == text
            and version in (None, j.get("version"))]


@pytest.mark.slow  # waits out a lookup window
@pytest.mark.parametrize("version", ["pinned", "trained"])
def test_a_replace_made_after_the_backup_is_adopted_after_a_restore(workspace: Path, platform: Platform,  # noqa: F811
                                                                    version: str) -> None:
    tag = workspace.parent.name[-10:].replace("_", "-").lower()
    trained = f"m-{tag}" if version == "trained" else None
    state = workspace / ".jobrunner" / "state.json"
    backup = workspace / ".jobrunner" / "state.json.bak"
    _manifest(workspace, f"one-{tag}", trained=trained)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    older = state.read_bytes()  # row a at its first input

    _manifest(workspace, f"two-{tag}", trained=trained)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")  # replaces a's job
    replacing = load_state(workspace)["addresses"]["PredictionBatch/b[a]"]["remote_id"]
    assert _jobs_for(platform, f"two-{tag}") == [replacing]

    backup.write_bytes(older)  # a backup taken before that replace
    state.write_bytes(b"{ garbage")
    assert run_cli("state", "restore-backup").code == 0

    plan = run_cli("plan", "jobs.yaml")
    assert plan.code == 0, plan.output
    assert f"adopting {replacing}" in plan.stdout, plan.stdout
    apply_until_converged(workspace, clean_env(platform))
    assert _jobs_for(platform, f"two-{tag}") == [replacing]  # 0 duplicates
    assert load_state(workspace)["addresses"]["PredictionBatch/b[a]"]["remote_id"] == replacing


@pytest.mark.slow  # waits out a lookup window
def test_jobs_on_a_retrained_version_made_after_the_backup_are_adopted_after_a_restore(
        workspace: Path, platform: Platform) -> None:  # noqa: F811
    """The batch's version is known only once the training is found again: its rows' jobs made
    since the backup must still be looked up before any create (seed 1002 of the model test)."""
    tag = workspace.parent.name[-10:].replace("_", "-").lower()
    model = f"m-{tag}"
    state = workspace / ".jobrunner" / "state.json"
    backup = workspace / ".jobrunner" / "state.json.bak"
    _manifest(workspace, f"one-{tag}", trained=model)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    older = state.read_bytes()  # the first training and its batch

    _manifest(workspace, f"one-{tag}", trained=model, data="again")  # retrained: the batch follows
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    made = {a: st["remote_id"] for a, st in load_state(workspace)["addresses"].items() if a.startswith("Pred")}
    version = load_state(workspace)["addresses"]["Training/t"]["outputs"]["version"].split(":")[-1]
    assert len(_jobs_for(platform, "same", version)) == 1

    backup.write_bytes(older)  # a backup taken before the retrain
    state.write_bytes(b"{ garbage")
    assert run_cli("state", "restore-backup").code == 0
    apply_until_converged(workspace, clean_env(platform))
    assert _jobs_for(platform, "same", version) == [made["PredictionBatch/b[z]"]]  # 0 duplicates
    assert _jobs_for(platform, f"one-{tag}", version) == [made["PredictionBatch/b[a]"]]
    after = {a: st["remote_id"] for a, st in load_state(workspace)["addresses"].items() if a.startswith("Pred")}
    assert after == made


@pytest.mark.slow  # waits out a lookup window
def test_a_job_made_just_before_the_damage_is_found_through_a_lagging_list(
        workspace: Path, platform: Platform) -> None:  # noqa: F811
    """The backup's last change is long past, the job was made seconds before the damage, and the
    provider's list lags: the lookup window runs from the restore, not from the backup's date
    (seed 1001 of the model test)."""
    tag = workspace.parent.name[-10:].replace("_", "-").lower()
    state = workspace / ".jobrunner" / "state.json"
    backup = workspace / ".jobrunner" / "state.json.bak"
    _manifest(workspace, f"one-{tag}")
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    older = json.loads(state.read_text())
    long_ago = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    for st in older["addresses"].values():  # the backup's last recorded change: 5 minutes ago
        st["updated_at"] = long_ago

    _manifest(workspace, f"two-{tag}")
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    replacing = load_state(workspace)["addresses"]["PredictionBatch/b[a]"]["remote_id"]
    platform.faults(list_lag_s=5)  # from now on the list hides jobs younger than 5 s
    try:
        backup.write_text(json.dumps(older))
        state.write_bytes(b"{ garbage")
        assert run_cli("state", "restore-backup").code == 0
        env = clean_env(platform, JOBRUNNER_LOOKUP_WINDOW="8")
        apply_until_converged(workspace, env)
    finally:
        platform.faults(reset=True)
    assert _jobs_for(platform, f"two-{tag}") == [replacing]  # 0 duplicates
    assert load_state(workspace)["addresses"]["PredictionBatch/b[a]"]["remote_id"] == replacing
