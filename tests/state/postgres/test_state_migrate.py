"""`jobrunner state migrate`: local file -> PostgreSQL and back, through the real CLI command."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jobrunner.commands.state_migrate import migrate, migrate_state
from jobrunner.errors import StateLockedError, UsageError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, StateDoc
from jobrunner.state.postgres import PostgresStore


def seeded_local(root) -> StateDoc:
    store = LocalFileStore(root / ".jobrunner" / "state.json")
    doc = store.load()
    for i in range(3):
        doc.addresses[f"PredictionBatch/eval[k{i}]"] = AddressState(
            address=f"PredictionBatch/eval[k{i}]", kind="PredictionBatch", job_kind="prediction",
            provider="local", file="specs/eval.yaml", fingerprint=str(i) * 64, remote_id=f"p{i}",
            status="succeeded", attempts=1, outputs={"output": f"text {i}"},
        )
    store.save(doc)
    return doc


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    # Shared (PostgreSQL) state needs a workspace id, as `jobrunner init` writes.
    (tmp_path / "jobrunner.yaml").write_text("workspace: {id: migrate-test}\nstate: {backend: local}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    return tmp_path


def test_migrate_to_postgres_and_back_keeps_lineage_and_addresses(workspace, pg_url, monkeypatch):
    original = seeded_local(workspace)
    result = CliRunner().invoke(migrate, ["--to", pg_url], standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == 0
    assert "Copied 3 address(es)" in result.output and "JOBRUNNER_STATE_URL" in result.output
    in_pg = PostgresStore(pg_url).load()
    assert in_pg.lineage == original.lineage
    assert in_pg.addresses == original.addresses

    # Now the workspace uses PostgreSQL; a change there, then copy back into a fresh local file.
    monkeypatch.setenv("JOBRUNNER_STATE_URL", pg_url)
    in_pg.addresses["PredictionBatch/eval[k0]"].status = "failed"
    PostgresStore(pg_url).save(in_pg)
    (workspace / ".jobrunner" / "state.json").unlink()
    result = CliRunner().invoke(migrate, ["--to", "local"], standalone_mode=False)
    assert result.exception is None, result.output
    back = json.loads((workspace / ".jobrunner" / "state.json").read_text())
    assert back["lineage"] == original.lineage
    assert back["addresses"]["PredictionBatch/eval[k0]"]["status"] == "failed"
    assert len(back["addresses"]) == 3


def test_migrate_refuses_a_destination_with_state_unless_forced(workspace, pg_url):
    seeded_local(workspace)
    other = PostgresStore(pg_url)
    doc = other.load()
    doc.addresses["Training/x"] = AddressState(address="Training/x", kind="Training", job_kind="training",
                                               provider="local", file="t.yaml")
    other.save(doc)
    source = LocalFileStore(workspace / ".jobrunner" / "state.json")
    with pytest.raises(UsageError, match="already holds state"):
        migrate_state(source, PostgresStore(pg_url))
    assert set(PostgresStore(pg_url).load().addresses) == {"Training/x"}  # untouched
    copied = migrate_state(source, PostgresStore(pg_url), force=True)
    assert "Training/x" not in copied.addresses and len(copied.addresses) == 3


def test_migrate_stops_when_the_destination_is_locked(workspace, pg_url):
    seeded_local(workspace)
    holder = PostgresStore(pg_url)
    with holder.lock("apply"), pytest.raises(StateLockedError):
        migrate_state(LocalFileStore(workspace / ".jobrunner" / "state.json"), PostgresStore(pg_url))


def test_migrate_to_itself_is_a_usage_error(workspace):
    store = LocalFileStore(workspace / ".jobrunner" / "state.json")
    with pytest.raises(UsageError, match="same store"):
        migrate_state(store, LocalFileStore(workspace / ".jobrunner" / "state.json"))


def test_state_migrate_is_a_subcommand_of_jobrunner_state(workspace, pg_url):
    from jobrunner.cli import cli

    seeded_local(workspace)
    result = CliRunner().invoke(cli, ["state", "migrate", "--to", pg_url], standalone_mode=False)
    assert result.exception is None, result.output
    assert "Copied 3 address(es)" in result.output
    assert len(PostgresStore(pg_url).load().addresses) == 3


def test_state_unlock_says_whose_lock_it_broke(workspace, pg_url, monkeypatch):
    from jobrunner.cli import cli

    monkeypatch.setenv("JOBRUNNER_STATE_URL", pg_url)
    holder = PostgresStore(pg_url)
    with holder.lock("apply"):
        refused = CliRunner().invoke(cli, ["state", "unlock"], standalone_mode=False)
        assert isinstance(refused.exception, StateLockedError)
        result = CliRunner().invoke(cli, ["state", "unlock", "--force"], standalone_mode=False)
        assert result.exception is None, result.output
        assert result.output.startswith("Broke the state lock held by") and "`jobrunner apply`" in result.output
    assert PostgresStore(pg_url).holder() is None


def test_a_copy_to_a_state_file_elsewhere_says_how_to_point_the_workspace_at_it(workspace, tmp_path):
    from jobrunner.cli import cli

    seeded_local(workspace)
    target = tmp_path / "copy.json"
    result = CliRunner().invoke(cli, ["state", "migrate", "--to", str(target)], standalone_mode=False)
    assert result.exception is None, result.output
    assert "Copied 3 address(es)" in result.output and "path: <that file>" in result.output
    assert "postgres" not in result.output.split("Copied", 1)[1].split("\n", 1)[1]
    assert len(LocalFileStore(target).load().addresses) == 3
