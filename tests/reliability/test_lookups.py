"""Exactly-once where the lookup after a lost create is hardest, end to end with the real CLI on the
real local platform, each fault scheduled so that every run exercises it:

- identical requests from several addresses (samples of one prompt) with every 3rd create dropped
  after commit: the lookup must not adopt a sibling's job whose answer is not recorded yet;
- a state restored from an older backup (`jobrunner state restore-backup`): addresses the backup
  does not know are looked up on the provider and adopted, never created again;
- a provider list that lags 5 s behind its jobs, with a create dropped after commit: the lookup
  keeps looking for the documented window before it concludes "not created".

Each ends with the exactly-once audit: every remote id belongs to one address, every platform job
belongs to some address, every address succeeded.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.reliability.harness import (
    ECHO,
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    load_state,
    platform_now,
    run_process,
)

# Waits out lookup windows against a lagging list: slow tier.
pytestmark = pytest.mark.slow


def _batch(root: Path, tag: str, keys: list[str], *, identical: bool) -> set[str]:
    """A batch of echo predictions; with `identical`, every row asks for exactly the same input."""
    rows = "".join(f"    - {{key: {k}, text: \"{tag}\"{'' if identical else f', n: {i}'}}}\n"
                   for i, k in enumerate(keys))
    (root / "jobs.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  inputs:\n{rows}", encoding="utf-8")
    return {f"PredictionBatch/echo[{k}]" for k in keys}


def _assert_exactly_once(platform: Platform, root: Path, since: str, expected: set[str]) -> None:
    audit = audit_exactly_once(platform, root, since, expected)
    assert not audit.problems, "\n".join(audit.problems[:40])
    assert audit.remote_jobs == len(expected), audit


def test_identical_rows_with_every_third_create_dropped_are_never_swapped(workspace: Path, platform: Platform) -> None:
    tag = "same-" + secrets.token_hex(4)
    expected = _batch(workspace, tag, [f"s{i:02d}" for i in range(30)], identical=True)
    since = platform_now(platform)
    platform.faults(drop_every_nth_create=3)
    try:
        results = apply_until_converged(workspace, clean_env(platform), "--parallelism", "10", "jobs.yaml")
    finally:
        platform.faults(reset=True)
    with platform.client() as c:
        dropped = c.get("/_admin/stats").json().get("status.dropped", 0)
    assert dropped >= 10, dropped  # the fault really fired: every 3rd of >= 30 creates
    assert "adopted" in "".join(r.output for r in results)
    _assert_exactly_once(platform, workspace, since, expected)


def test_a_state_restored_from_an_older_backup_adopts_instead_of_creating(workspace: Path, platform: Platform) -> None:
    """The state file is damaged, and the backup left is older than the last apply: restored with
    `jobrunner state restore-backup`, the 4 addresses it lacks are found on the platform."""
    tag = "restore-" + secrets.token_hex(4)
    env = clean_env(platform)
    since = platform_now(platform)
    _batch(workspace, tag, [f"r{i}" for i in range(4)], identical=False)
    assert run_process(["apply", "--auto-approve", "jobs.yaml"], workspace, env).code == 0
    state_file = workspace / ".jobrunner" / "state.json"
    older = state_file.read_text(encoding="utf-8")
    expected = _batch(workspace, tag, [f"r{i}" for i in range(8)], identical=False)
    assert run_process(["apply", "--auto-approve", "jobs.yaml"], workspace, env).code == 0
    (workspace / ".jobrunner" / "state.json.bak").write_text(older, encoding="utf-8")
    state_file.write_text(state_file.read_text(encoding="utf-8")[:100], encoding="utf-8")  # damaged
    assert run_process(["plan", "jobs.yaml"], workspace, env).code == 1
    restored = run_process(["state", "restore-backup"], workspace, env)
    assert restored.code == 0, restored.output
    plan = run_process(["plan", "jobs.yaml"], workspace, env)
    assert plan.code == 0, plan.output
    assert "0 to create" in plan.output and "4 to adopt" in plan.output, plan.output
    as_json = run_process(["plan", "--format", "json", "jobs.yaml"], workspace, env)
    actions = {c["address"]: c["action"] for c in json.loads(as_json.stdout)["changes"]}
    assert [actions.get(f"PredictionBatch/echo[r{i}]") for i in range(4, 8)] == ["adopt"] * 4, as_json.output
    r = run_process(["apply", "--auto-approve"], workspace, env)  # the whole workspace
    assert r.code == 0, r.output
    _assert_exactly_once(platform, workspace, since, expected)
    assert load_state(workspace).get("recovered_at") is None  # the recovery is done
    again = run_process(["plan", "--detailed-exitcode", "jobs.yaml"], workspace, env)
    assert again.code == 0, again.output


def test_a_lagging_list_and_a_dropped_create_give_no_duplicate(workspace: Path, platform: Platform) -> None:
    tag = "lag-" + secrets.token_hex(4)
    expected = _batch(workspace, tag, [f"l{i}" for i in range(5)], identical=False)
    since = platform_now(platform)
    platform.faults(list_lag_s=5, drop_next_creates=1)
    try:
        r = run_process(["apply", "--auto-approve", "--parallelism", "1", "jobs.yaml"], workspace,
                        clean_env(platform, JOBRUNNER_LOOKUP_WINDOW="8"))
    finally:
        platform.faults(reset=True)
    assert r.code == 0, r.output
    assert "adopted" in r.output, r.output
    _assert_exactly_once(platform, workspace, since, expected)
