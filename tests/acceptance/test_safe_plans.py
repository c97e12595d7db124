"""Safe plans (issue 10, items 1 and 2), end to end: the real CLI against the real local platform.

Removal is only what the user removed: a manifest whose jobs are running that stops reading as
jobrunner manifests (an apiVersion typo, a YAML error, a missing kind, emptied) stops plan and
apply with exit 1 and a message naming the file and its tracked jobs; nothing is canceled on the
platform and state still tracks every job. One workspace wherever you stand: a run from a
sub-directory sees the same state; a run where there are no manifests and no state is an error
that writes nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import Platform
from tests.helpers.cli import run_cli

SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def sleep_batch(name: str, n: int, seconds: float = 120) -> str:
    rows = "\n".join(f"    - {{key: r{i}, seconds: {seconds}}}" for i in range(n))
    return (f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: local\n  version: {SLEEP}\n  inputs:\n{rows}\n")


def state(root: Path) -> dict:
    """The addresses state records, as jobrunner reads them (snapshot and journal)."""
    from jobrunner.state.local_file import read_state_json

    return read_state_json(root / ".jobrunner" / "state.json")["addresses"]


def platform_jobs(platform: Platform) -> list[dict]:
    out: list[dict] = []
    with platform.client() as c:
        url: str | None = "/v1/predictions"
        while url:
            page = c.get(url).json()
            out += page["results"]
            url = page.get("next")
    return out


def canceled_ids(platform: Platform, ids: set[str]) -> set[str]:
    return {j["id"] for j in platform_jobs(platform) if j["id"] in ids and j["status"] == "canceled"}


# Each mistake turns the running batch's file into something that no longer yields its documents.
TYPOS = {
    "v2": lambda t: t.replace("apiVersion: jobrunner/v1", "apiVersion: jobrunner/v2"),
    "V1": lambda t: t.replace("apiVersion: jobrunner/v1", "apiVersion: jobrunner/V1"),
    "missing-colon": lambda t: t.replace("apiVersion: jobrunner/v1", "apiVersion jobrunner/v1"),
    "yaml-error": lambda t: t.replace("metadata: {name: run}", "metadata: {name: run"),
    "missing-kind": lambda t: t.replace("kind: PredictionBatch\n", ""),
    "emptied": lambda t: "\n   \n",
    "commented-out": lambda t: "".join(f"# {line}\n" for line in t.splitlines()),
}
# What the error says, beyond naming the file and its tracked jobs.
WORDS = {
    "v2": "unsupported apiVersion jobrunner/v2; this jobrunner reads jobrunner/v1",
    "V1": "unsupported apiVersion jobrunner/V1; this jobrunner reads jobrunner/v1",
    "missing-colon": "invalid YAML",
    "yaml-error": "invalid YAML",
    "missing-kind": "missing required field `kind`",
    "emptied": "holds no jobrunner documents",
    "commented-out": "holds no jobrunner documents",
}


@pytest.mark.slow  # one running batch per typo
@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_a_typo_in_a_running_batch_file_cancels_nothing(workspace: Path, platform: Platform, typo: str):
    m = workspace / "manifests"
    m.mkdir()
    (m / "keep.yaml").write_text(sleep_batch("keep", 1, seconds=0.1))
    text = sleep_batch("run", 3)
    (m / "run.yaml").write_text(text)
    r = run_cli("apply", "--auto-approve", "--no-wait", "manifests")
    assert r.code == 0, r.output
    before = state(workspace)
    ids = {st["remote_id"] for a, st in before.items() if a.startswith("PredictionBatch/run[")}
    assert len(ids) == 3

    (m / "run.yaml").write_text(TYPOS[typo](text))
    for args in (["plan", "--detailed-exitcode"], ["apply", "--auto-approve"]):
        r = run_cli(*args)  # the default path: the workspace root, which holds manifests/
        assert r.code == 1, r.output
        assert "Traceback" not in r.output
        assert WORDS[typo] in r.output, r.output
        assert "manifests/run.yaml" in r.stderr and "3 tracked addresses" in r.stderr, r.output
        assert "Nothing was sent" in r.stderr
        assert "cancel" not in r.stdout.lower() and "forget" not in r.stdout.lower()
    if typo in ("v2", "V1"):
        r = run_cli("validate")
        assert r.code == 1, r.output
        assert f"manifests/run.yaml:1:1: $.apiVersion: {WORDS[typo]}" in r.stdout, r.output
    assert canceled_ids(platform, ids) == set()
    assert set(state(workspace)) == set(before)

    (m / "run.yaml").write_text(text)  # restored: nothing is planned anew
    r = run_cli("plan", "--detailed-exitcode", "manifests/run.yaml")
    assert r.code == 0, r.output
    assert "create" not in r.stdout.lower()
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output


@pytest.mark.slow  # 200 jobs
def test_a_200_job_batch_survives_an_api_version_typo(workspace: Path, platform: Platform):
    m = workspace / "manifests"
    m.mkdir()
    text = sleep_batch("big", 200)
    (m / "big.yaml").write_text(text)
    r = run_cli("apply", "--auto-approve", "--no-wait", "manifests")
    assert r.code == 0, r.output
    ids = {st["remote_id"] for st in state(workspace).values()}
    assert len(ids) == 200

    (m / "big.yaml").write_text(text.replace("jobrunner/v1", "jobrunner/v2"))
    r = run_cli("apply", "--auto-approve", "manifests")
    assert r.code == 1, r.output
    assert "manifests/big.yaml:1:1: $.apiVersion: unsupported apiVersion jobrunner/v2" in r.stderr, r.output
    assert "200 tracked addresses" in r.stderr
    assert canceled_ids(platform, ids) == set()
    assert len(state(workspace)) == 200

    (m / "big.yaml").write_text(text)
    r = run_cli("plan", "--detailed-exitcode", "manifests")
    assert r.code == 0, r.output
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output


def test_deleting_the_file_is_still_a_removal(workspace: Path, platform: Platform):
    m = workspace / "manifests"
    m.mkdir()
    (m / "run.yaml").write_text(sleep_batch("run", 2))
    assert run_cli("apply", "--auto-approve", "--no-wait", "manifests").code == 0
    ids = {st["remote_id"] for st in state(workspace).values()}
    (m / "run.yaml").unlink()
    r = run_cli("plan", "--detailed-exitcode", "manifests")
    assert r.code == 2, r.output
    assert r.stdout.lower().count("cancel") >= 2
    r = run_cli("apply", "--auto-approve", "manifests")
    assert r.code == 0, r.output
    assert canceled_ids(platform, ids) == ids and state(workspace) == {}


def test_the_same_plan_from_a_sub_directory(workspace: Path, platform: Platform, monkeypatch: pytest.MonkeyPatch):
    m = workspace / "manifests" / "batches"
    m.mkdir(parents=True)
    (m / "run.yaml").write_text(sleep_batch("run", 2))
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    from_root = run_cli("plan", "--detailed-exitcode", "manifests/batches")
    monkeypatch.chdir(m)
    from_sub = run_cli("plan", "--detailed-exitcode")
    assert from_sub.code == from_root.code == 0, from_sub.output + from_root.output
    assert from_sub.stdout == from_root.stdout
    assert "create" not in from_sub.stdout.lower()
    assert not (m / ".jobrunner").exists()
    monkeypatch.chdir(workspace)
    assert run_cli("destroy", "--auto-approve").code == 0


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"], ["destroy", "--auto-approve"],
                                     ["plan", "--detailed-exitcode"]])
def test_no_manifests_and_no_state_is_an_error_that_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   command: list[str]):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    r = run_cli(*command)
    assert r.code == 1, r.output
    assert f"No manifests found under {empty}" in r.stderr
    assert "jobrunner init" in r.stderr
    assert list(empty.iterdir()) == []


def test_a_directory_without_manifests_inside_a_used_workspace(workspace: Path, platform: Platform,
                                                               monkeypatch: pytest.MonkeyPatch):
    (workspace / "manifests").mkdir()
    (workspace / "manifests" / "run.yaml").write_text(sleep_batch("run", 1, seconds=0.1))
    assert run_cli("apply", "--auto-approve").code == 0
    docs = workspace / "docs"
    docs.mkdir()
    monkeypatch.chdir(docs)
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 1, r.output
    assert f"No manifests found under {docs}" in r.stderr
    assert list(docs.iterdir()) == []


def test_init_pins_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "repo"
    (root / "ml" / "batches").mkdir(parents=True)
    monkeypatch.chdir(root)
    r = run_cli("init")
    assert r.code == 0, r.output
    assert (root / "jobrunner.yaml").is_file() and not (root / ".jobrunner").exists()
    from jobrunner.workspace import find_workspace, load_config

    cfg = load_config(root)
    assert cfg.state_path == ".jobrunner/state.json" and cfg.workspace_id and cfg.workspace_id.startswith("repo-")
    assert find_workspace(root / "ml" / "batches") == root.resolve()
    r = run_cli("init")
    assert r.code == 0 and "already a workspace" in r.stdout
    monkeypatch.chdir(root / "ml")
    r = run_cli("init")
    assert r.code == 1 and f"inside the workspace {root}" in r.stderr, r.output
    assert not (root / "ml" / "jobrunner.yaml").exists()
    r = run_cli("init", "--force")
    assert r.code == 0 and (root / "ml" / "jobrunner.yaml").is_file()


def test_init_keeps_the_id_the_state_already_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / ".jobrunner").mkdir()
    (tmp_path / ".jobrunner" / "state.json").write_text(json.dumps(
        {"format_version": 1, "serial": 3, "lineage": "l", "workspace_id": "team-ml-0a1b2c3d", "addresses": {}}))
    monkeypatch.chdir(tmp_path)
    r = run_cli("init")
    assert r.code == 0, r.output
    from jobrunner.workspace import load_config

    assert load_config(tmp_path).workspace_id == "team-ml-0a1b2c3d"
    assert run_cli("status", "--no-refresh").code == 0  # the state's id and the config's agree


def test_manifests_named_from_an_unrelated_directory_use_their_workspace(workspace: Path, platform: Platform,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    m = workspace / "manifests"
    m.mkdir()
    (m / "run.yaml").write_text(sleep_batch("run", 2))
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = run_cli("plan", "--detailed-exitcode", str(m))
    assert r.code == 0, r.output
    assert "create" not in r.stdout.lower()
    assert list(elsewhere.iterdir()) == []
    assert run_cli("destroy", "--auto-approve", str(m)).code == 0
    assert state(workspace) == {}


def test_manifests_below_an_unmarked_directory_use_the_workspace_between(workspace: Path, platform: Platform,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """`cd /tmp && jobrunner plan /tmp/proj/specs` (or `proj/specs`): nothing marks /tmp, proj is a
    workspace with state. The plan is proj's (no changes), never a fresh /tmp workspace planning
    every job as new, and nothing is written in /tmp."""
    m = workspace / "manifests"
    m.mkdir()
    (m / "run.yaml").write_text(sleep_batch("run", 2))
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for named in (str(m), "ws/manifests", "ws/manifests/run.yaml"):
        r = run_cli("plan", "--detailed-exitcode", named)
        assert r.code == 0, (named, r.output)
        assert "create" not in r.stdout.lower(), (named, r.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert run_cli("destroy", "--auto-approve", "ws/manifests").code == 0
    assert state(workspace) == {}


def test_manifests_of_another_workspace_are_refused(workspace: Path, platform: Platform, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """Run inside workspace B on workspace A's manifests: planned against B's state, A's running
    jobs would look new and be created again. Every command that plans refuses, names both
    workspaces and says where to run it; nothing is created or written. `validate` (offline, no
    state) checks them with their own workspace's config instead."""
    from tests.helpers.cli import write_workspace

    m = workspace / "manifests"
    m.mkdir()
    (m / "run.yaml").write_text(sleep_batch("run", 2))
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    jobs = len(platform_jobs(platform))
    other = write_workspace(tmp_path / "other", platform.url)
    monkeypatch.chdir(other)
    for command in (["plan"], ["apply", "--auto-approve", "--no-wait"], ["destroy", "--auto-approve"]):
        r = run_cli(*command, str(m))
        assert r.code != 0, (command, r.output)
        assert f"belongs to the workspace at {workspace.resolve()}" in r.stderr, (command, r.stderr)
        assert f"cd {workspace.resolve()}" in r.stderr and "Traceback" not in r.output
    assert len(platform_jobs(platform)) == jobs
    assert sorted(p.name for p in other.iterdir()) == ["jobrunner.yaml"]
    r = run_cli("validate", str(m))
    assert r.code == 0 and "1 resource" in r.stdout, r.output
    monkeypatch.chdir(workspace)
    assert run_cli("destroy", "--auto-approve").code == 0


def test_validate_of_several_workspaces_checks_each_with_its_own_config(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """A monorepo's CI validates every workspace at once from the top: each is checked with its own
    jobrunner.yaml (a mistyped base_url is named in its file), and files are named from where
    the command runs, so two workspaces' `specs/run.yaml` never read as one."""
    for name in ("a", "b"):
        (tmp_path / name / "specs").mkdir(parents=True)
        (tmp_path / name / "specs" / "run.yaml").write_text(sleep_batch("run", 1, seconds=0.1))
    (tmp_path / "a" / "jobrunner.yaml").write_text("{}\n")
    (tmp_path / "b" / "jobrunner.yaml").write_text("{}\n")
    (tmp_path / "b" / "specs" / "run.yaml").write_text(sleep_batch("run", 1).replace("seconds: 120", "seconds: x"))
    monkeypatch.chdir(tmp_path)
    r = run_cli("validate", "a/specs", "b/specs")
    assert r.code == 1, r.output
    assert "b/specs/run.yaml:" in r.stdout and "a/specs/run.yaml:" not in r.stdout, r.stdout
    assert "2 resources" in r.stdout or "2 files" in r.stdout, r.stdout
    assert run_cli("validate", "a/specs").code == 0
    (tmp_path / "b" / "jobrunner.yaml").write_text("providers:\n  emissary:\n    base_url: locall\n")
    r = run_cli("validate", "a/specs", "b/specs")
    assert r.code == 1 and "jobrunner.yaml:3:5: $.providers.emissary.base_url" in r.stderr, r.output
    assert list((tmp_path / "a").iterdir()) and not (tmp_path / "a" / ".jobrunner").exists()


def test_state_rm_where_nothing_is_tracked_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli("state", "rm", "Training/x")
    assert r.code == 1 and "Training/x: not in state" in r.stderr, r.output
    assert list(tmp_path.iterdir()) == []



def test_a_saved_plan_kept_elsewhere_applies_to_the_current_workspace(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    """Nothing marks the workspace yet (no jobrunner.yaml, no state): `apply /elsewhere/plan.json`
    (a CI artifact) applies to the current directory's manifests and state, not to /elsewhere."""
    from jobrunner.local.autostart import stop_platform

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.yaml").write_text(sleep_batch("quick", 1, seconds=0.1))
    artifact = tmp_path / "artifacts" / "plan.json"
    artifact.parent.mkdir()
    monkeypatch.chdir(ws)
    monkeypatch.delenv("JOBRUNNER_LOCAL_TOKEN", raising=False)  # the auto-started platform's own token
    try:
        r = run_cli("plan", "--out", str(artifact))
        assert r.code == 0, r.output
        r = run_cli("apply", str(artifact))
        assert r.code == 0, r.output
        assert list(state(ws)) == ["PredictionBatch/quick[r0]"]
        assert sorted(p.name for p in artifact.parent.iterdir()) == ["plan.json"]
    finally:
        stop_platform(ws)
