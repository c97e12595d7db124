"""`jobrunner state restore-backup`: the way back from a damaged state file, without duplicates.

The backup lags the state it stands in for. End to end (real CLI, real local platform): a backup
that lacks the last three jobs of a batch is restored after the state file was truncated; the
next apply adopts those three jobs instead of creating them again (0 duplicates, 0 lost), and the
recovered flag is cleared. Then the command's own rules: it keeps the damaged file, refuses a
readable state without --force, says what is wrong without a backup, and checks the workspace id.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from jobrunner.errors import StateError, UsageError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, StateDoc
from tests.reliability.conftest import platform, workspace  # noqa: F401  (fixtures)
from tests.reliability.harness import (
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    load_state,
    platform_now,
    run_cli,
    run_process,
)
from tests.reliability.workloads import write_workload


@pytest.mark.slow  # waits out a lookup window
def test_restoring_a_lagging_backup_adopts_the_jobs_it_lacks(workspace: Path, platform: Platform) -> None:  # noqa: F811
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    since = platform_now(platform)
    write_workload(workspace, tag, predictions=3, trainings=0)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    state = workspace / ".jobrunner" / "state.json"
    backup = workspace / ".jobrunner" / "state.json.bak"
    older = state.read_bytes()  # knows p0..p2 only
    expected = write_workload(workspace, tag, predictions=6, trainings=0)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    assert len(load_state(workspace)["addresses"]) == 6

    backup.write_bytes(older)  # a backup taken before the last three jobs were created
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # then the state file is damaged
    damaged = state.read_bytes()

    broken = run_cli("plan", "jobs.yaml")
    assert broken.code == 1 and "corrupt or truncated" in broken.stderr, broken.output
    assert "`jobrunner state restore-backup`" in broken.stderr and "cp " not in broken.stderr

    restored = run_cli("state", "restore-backup")
    assert restored.code == 0, restored.output
    assert "3 addresses" in restored.stdout and "marked recovered" in restored.stdout
    kept = [p for p in state.parent.iterdir() if p.name.startswith("state.json.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert load_state(workspace)["recovered_at"]

    plan = run_cli("plan", "jobs.yaml")
    assert plan.code == 0, plan.output
    assert plan.stdout.count("adopting") == 3, plan.stdout  # found on the provider, not created again

    apply_until_converged(workspace, clean_env(platform))  # the whole workspace, as the command says
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 6  # 0 duplicates
    assert "recovered_at" not in load_state(workspace)


def test_an_apply_killed_after_its_first_save_on_a_restored_state_leaves_the_lookups(
        workspace: Path, platform: Platform) -> None:  # noqa: F811
    """Planning on a restored state gives each address the backup lacks a lookup intent and clears
    the recovered flag; apply's first save records the cleared flag. Killed right after that save
    (one of three adoptions recorded), the next apply must still look the other two up, not create
    them again (found by the model soak, seed 1303, where the first save was a row's forget).
    `--target` makes that first save one adoption's, deterministically."""
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    since = platform_now(platform)
    write_workload(workspace, tag, predictions=3, trainings=0)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    state = workspace / ".jobrunner" / "state.json"
    older = state.read_bytes()  # knows p0..p2 only
    expected = write_workload(workspace, tag, predictions=6, trainings=0)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    (workspace / ".jobrunner" / "state.json.bak").write_bytes(older)
    state.write_bytes(b"")  # the state file is emptied
    assert run_cli("state", "restore-backup").code == 0

    # An apply of one of them, killed right after its first save: that adoption's journal record.
    killed = run_process(["apply", "--auto-approve", "--target", "PredictionBatch/echo[p3]"], workspace,
                         clean_env(platform, JOBRUNNER_TEST_CRASH_AT="journal.appended:1"))
    assert killed.code == -signal.SIGKILL, killed.output
    assert killed.output.count("adopting") == 1, killed.output
    left = load_state(workspace)
    assert not left.get("recovered_at"), left  # that save recorded the flag planning cleared...
    untracked = [a for a, st in left["addresses"].items() if not (st.get("intent") or st.get("remote_id"))]
    assert len(left["addresses"]) == 6 and not untracked, left  # ...and so every lookup intent with it

    results = apply_until_converged(workspace, clean_env(platform))
    assert "created (" not in results[0].output, results[0].output  # the other two adopted, not re-run
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 6  # 0 duplicates


def test_destroy_after_a_restore_cancels_the_jobs_the_backup_lacks(workspace: Path, platform: Platform) -> None:  # noqa: F811
    """The backup knows one of three running jobs; destroy finds the other two, as apply would."""
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    since = platform_now(platform)
    env = clean_env(platform)
    write_workload(workspace, tag, predictions=0, trainings=0, slow=1, slow_seconds=120)
    assert run_process(["apply", "--auto-approve", "--no-wait"], workspace, env).code == 0
    state = workspace / ".jobrunner" / "state.json"
    older = state.read_bytes()  # knows slow[s0] only
    write_workload(workspace, tag, predictions=0, trainings=0, slow=3, slow_seconds=120)
    assert run_process(["apply", "--auto-approve", "--no-wait"], workspace, env).code == 0
    (workspace / ".jobrunner" / "state.json.bak").write_bytes(older)
    state.write_text("{")  # damaged
    assert run_cli("state", "restore-backup").code == 0

    destroyed = run_process(["destroy", "--auto-approve"], workspace, env)
    assert destroyed.code == 0, destroyed.output
    jobs = [j for j in platform.jobs("predictions") if j["created_at"] >= since]
    assert len(jobs) == 3 and {j["status"] for j in jobs} == {"canceled"}, [(j["id"], j["status"]) for j in jobs]
    assert load_state(workspace)["addresses"] == {}
    assert "recovered_at" not in load_state(workspace)


def _doc(*names: str, workspace_id: str | None = None) -> StateDoc:
    doc = StateDoc(lineage="L", workspace_id=workspace_id)
    for name in names:
        doc.addresses[f"Training/{name}"] = AddressState(
            address=f"Training/{name}", kind="Training", job_kind="training", provider="local", file="jobs.yaml",
            remote_id=f"r-{name}", status="succeeded", updated_at="2026-01-01T00:00:00Z")
    return doc


def _two_saves(path: Path, workspace_id: str | None = None) -> LocalFileStore:
    store = LocalFileStore(path, workspace_id=workspace_id)
    store.save(_doc("a", workspace_id=workspace_id))
    store.save(_doc("a", "b", workspace_id=workspace_id))
    return store


def test_restore_rules(tmp_path: Path) -> None:
    from jobrunner.commands.state_restore import restore_backup

    path = tmp_path / "state.json"
    store = _two_saves(path)
    with pytest.raises(UsageError, match="is readable"):
        restore_backup(LocalFileStore(path))
    doc, aside = restore_backup(LocalFileStore(path), force=True)  # a readable state is kept aside too
    assert aside is not None and sorted(json.loads(aside.read_text())["addresses"]) == ["Training/a", "Training/b"]
    assert sorted(doc.addresses) == ["Training/a"] and doc.recovered_at == "2026-01-01T00:00:00Z"
    assert os.stat(store.path).st_ino != os.stat(store.backup_path).st_ino

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StateError, match="no backup to restore"):
        restore_backup(LocalFileStore(empty / ".jobrunner" / "state.json"))
    assert list(empty.iterdir()) == []  # no .jobrunner/ made where there is nothing to restore

    nothing = tmp_path / "none" / "state.json"
    nothing.parent.mkdir()
    nothing.write_text("{")
    with pytest.raises(StateError, match="no backup to restore"):
        restore_backup(LocalFileStore(nothing))

    other = tmp_path / "other" / "state.json"
    other.parent.mkdir()
    _two_saves(other, workspace_id="ml-1")
    other.write_text("{")
    from jobrunner.state.identity import WorkspaceMismatchError

    with pytest.raises(WorkspaceMismatchError):
        restore_backup(LocalFileStore(other, workspace_id="ml-2"))
    assert other.read_text() == "{"  # nothing was changed


def test_a_deleted_state_file_next_to_its_backup_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    from jobrunner.commands.state_restore import restore_backup

    path = tmp_path / "state.json"
    _two_saves(path)
    path.unlink()  # read as empty state, the next apply would create every tracked job again
    with pytest.raises(StateError, match="is missing, but its backup") as refused:
        LocalFileStore(path).load()
    assert "jobrunner state restore-backup" in (refused.value.hint or "")
    doc, aside = restore_backup(LocalFileStore(path))  # the way out the hint names
    assert aside is None and sorted(doc.addresses) == ["Training/a"] and doc.recovered_at
    assert sorted(LocalFileStore(path).load().addresses) == ["Training/a"]


def test_restore_is_refused_for_postgresql_state() -> None:
    pytest.importorskip("psycopg")
    from jobrunner.commands.state_restore import restore_backup
    from jobrunner.state.postgres import PostgresStore

    with pytest.raises(UsageError, match="keeps no state.json.bak"):
        restore_backup(PostgresStore("postgresql://ci@127.0.0.1:1/jobrunner"))
