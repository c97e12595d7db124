"""The local state file: atomic writes, backups, corruption reports, versions, and the lock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobrunner.errors import ConfigError, StateError, StateLockedError
from jobrunner.exitcodes import ExitCode, for_error
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.lock import LockInfo
from jobrunner.state.model import STATE_FORMAT_VERSION, AddressState, Attempt, Intent, StateDoc
from jobrunner.state.store import StateStore, open_store
from jobrunner.workspace import WorkspaceConfig


def _doc_with(address: str = "Training/a") -> StateDoc:
    doc = StateDoc()
    doc.addresses[address] = AddressState(
        address=address, kind="Training", job_kind="training", provider="local", file="jobs.yaml",
        fingerprint="f" * 64, remote_id="r1", status="succeeded", attempts=1,
        outputs={"version": "me/x:abc"},
        history=[Attempt(remote_id="r1", fingerprint="f" * 64, attempt=1, created_at="2026-01-01T00:00:00+00:00",
                         status="succeeded")],
        intent=Intent(fingerprint="f" * 64, attempt=2, created_at="2026-01-02T00:00:00+00:00", request_digest="d"),
    )
    return doc


def test_missing_file_loads_empty_doc_with_lineage(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / ".jobrunner" / "state.json")
    doc = store.load()
    assert doc.serial == 0 and doc.addresses == {} and len(doc.lineage) == 36
    assert isinstance(store, StateStore)


def test_save_round_trips_and_bumps_serial(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / ".jobrunner" / "state.json")
    doc = _doc_with()
    doc.lineage = "L"
    store.save(doc)
    assert doc.serial == 1
    store.save(doc)
    assert doc.serial == 2
    again = store.load()
    assert again.serial == 2 and again.lineage == "L"
    assert again.addresses["Training/a"] == doc.addresses["Training/a"]
    # no temporary files are left behind
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json", "state.json.bak"]


def test_backup_holds_the_previous_good_document(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc_with()
    store.save(doc)
    doc.addresses["Training/b"] = AddressState(address="Training/b", kind="Training", job_kind="training",
                                               provider="local", file="jobs.yaml")
    store.save(doc)
    backup = json.loads(store.backup_path.read_text())
    assert backup["serial"] == 1 and sorted(backup["addresses"]) == ["Training/a"]
    assert json.loads(store.path.read_text())["serial"] == 2


def test_corrupt_file_names_file_and_backup(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc_with()
    store.save(doc)
    store.save(doc)
    full = store.path.read_text()
    store.path.write_text(full[: len(full) // 2])  # truncated mid-write by something else
    with pytest.raises(StateError) as info:
        LocalFileStore(store.path).load()
    err = info.value
    assert str(store.path) in str(err) and "corrupt or truncated" in str(err)
    assert "`jobrunner state restore-backup`" in err.hint and "serial 1" in err.hint
    assert "cp " not in err.hint  # a plain copy would plan the jobs missing from the backup as new
    # the corrupt file never becomes the backup
    fresh = LocalFileStore(store.path)
    fresh.save(StateDoc(lineage="x"))
    assert json.loads(store.backup_path.read_text())["serial"] == 1


def test_empty_file_without_backup(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("")
    with pytest.raises(StateError) as info:
        LocalFileStore(path).load()
    assert "is empty" in str(info.value) and "no usable backup" in info.value.hint


def test_wrong_shapes_are_state_errors(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("[1, 2]")
    with pytest.raises(StateError, match="not a jobrunner state document"):
        LocalFileStore(path).load()
    path.write_text(json.dumps({"format_version": 1, "addresses": {"x": {"bogus": 1}}}))
    with pytest.raises(StateError, match="invalid entry"):
        LocalFileStore(path).load()


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format_version": STATE_FORMAT_VERSION + 1, "serial": 3, "addresses": {}}))
    with pytest.raises(StateError) as info:
        LocalFileStore(path).load()
    assert "newer than this jobrunner understands" in str(info.value)
    assert "upgrade jobrunner" in info.value.hint


def test_a_write_by_another_process_is_not_overwritten(tmp_path: Path) -> None:
    mine, theirs = LocalFileStore(tmp_path / "state.json"), LocalFileStore(tmp_path / "state.json")
    doc = mine.load()
    mine.save(doc)
    stale = theirs.load()
    doc.addresses["Training/a"] = _doc_with().addresses["Training/a"]
    mine.save(doc)  # serial 2
    with pytest.raises(StateError, match="written by another process"):
        theirs.save(stale)  # would write serial 2 over a different serial 2
    assert stale.serial == 1 and "Training/a" in theirs.load().addresses


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc_with()
    store.save(doc)
    before = store.path.read_bytes()
    doc.addresses["Training/a"].outputs = {"bad": object()}  # not JSON
    with pytest.raises(StateError, match="not JSON"):
        store.save(doc)
    assert doc.serial == 1 and store.path.read_bytes() == before


def test_lock_writes_holder_and_blocks_a_second_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "777")
    store = LocalFileStore(tmp_path / "state.json")
    with store.lock("apply"):
        holder = LockInfo.parse(store.lock_path.read_text())
        assert holder is not None and holder.pid == os.getpid() and holder.command == "apply"
        assert holder.ci_run == "GITHUB_RUN_ID=777"
        other = LocalFileStore(tmp_path / "state.json")  # a second handle (flock is per open file)
        with pytest.raises(StateLockedError) as info, other.lock("plan"):
            pass
        assert for_error(info.value) == ExitCode.LOCKED
        assert "jobrunner apply" in str(info.value) and f"pid {os.getpid()}" in str(info.value)
        assert "GITHUB_RUN_ID=777" in str(info.value)
    assert store.lock_path.read_text() == ""  # released: note cleared, file kept
    with LocalFileStore(tmp_path / "state.json").lock("plan"):
        pass


_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from jobrunner.state.local_file import LocalFileStore
    store = LocalFileStore(Path(sys.argv[1]))
    with store.lock("apply"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_lock_of_a_killed_process_is_taken_over_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(StateLockedError, match=f"pid {proc.pid}"), LocalFileStore(path).lock("plan"):
            pass
    finally:
        proc.kill()  # kill -9: no cleanup runs, the note stays, the OS lock goes
        proc.wait()
    assert LockInfo.parse((tmp_path / "state.json.lock").read_text()).pid == proc.pid
    store = LocalFileStore(path)
    with store.lock("apply"):
        assert len(store.warnings) == 1
        assert "took over a stale state lock" in store.warnings[0] and str(proc.pid) in store.warnings[0]


def test_lock_from_another_host_is_refused_until_unlocked(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    note = LockInfo(id="x", host="ci-runner-42", pid=12345, user="ci", command="apply",
                    started_at="2026-01-01T00:00:00+00:00", ci_run="GITHUB_RUN_ID=9")
    store.lock_path.write_text(note.to_text())
    with pytest.raises(StateLockedError) as info, store.lock("plan"):
        pass
    msg = str(info.value)
    assert "ci@ci-runner-42" in msg and "GITHUB_RUN_ID=9" in msg and " ago" in msg
    assert "jobrunner state unlock" in info.value.hint
    said = store.unlock(force=False)
    assert "ci-runner-42" in said
    with store.lock("plan"):
        pass


def test_unlock_refuses_a_live_holder_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        store = LocalFileStore(path)
        with pytest.raises(StateLockedError) as info:
            store.unlock(force=False)
        assert "--force" in info.value.hint
        assert "broke the state lock" in store.unlock(force=True)
        with store.lock("apply"):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_unlock_when_not_locked(tmp_path: Path) -> None:
    assert "not locked" in LocalFileStore(tmp_path / "state.json").unlock(force=False)


def test_open_store_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    store = open_store(WorkspaceConfig(), tmp_path)
    assert isinstance(store, LocalFileStore) and store.path == tmp_path / ".jobrunner" / "state.json"
    store = open_store(WorkspaceConfig(state_path="custom/s.json"), tmp_path)
    assert isinstance(store, LocalFileStore) and store.path == tmp_path / "custom" / "s.json"
    monkeypatch.setenv("JOBRUNNER_STATE_URL", f"file://{tmp_path}/elsewhere.json")
    store = open_store(WorkspaceConfig(), tmp_path)
    assert isinstance(store, LocalFileStore) and store.path == tmp_path / "elsewhere.json"
    monkeypatch.setenv("JOBRUNNER_STATE_URL", "s3://bucket/state")
    with pytest.raises(ConfigError, match="unsupported state URL scheme"):
        open_store(WorkspaceConfig(), tmp_path)
    monkeypatch.delenv("JOBRUNNER_STATE_URL")
    with pytest.raises(ConfigError, match="state.url is not set"):
        open_store(WorkspaceConfig(state_backend="postgres"), tmp_path)
    with pytest.raises(ConfigError, match="unknown state backend"):
        open_store(WorkspaceConfig(state_backend="etcd"), tmp_path)


_SAVE_FOREVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import AddressState, StateDoc
    store = LocalFileStore(Path(sys.argv[1]))
    doc = store.load()
    doc.lineage = "L"
    for i in range(2000):
        doc.addresses[f"PredictionBatch/b[{i}]"] = AddressState(
            address=f"PredictionBatch/b[{i}]", kind="PredictionBatch", job_kind="prediction", provider="local",
            file="b.yaml", fingerprint="f" * 64, remote_id=f"r{i}", status="succeeded", outputs={"text": "x" * 200})
    store.save(doc)
    print("ready", flush=True)
    while True:
        store.save(doc)
    """
)


@pytest.mark.slow  # a kill case
def test_kill_9_during_saves_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        import time

        time.sleep(delay)
        proc.kill()
        proc.wait()
        doc = LocalFileStore(path).load()  # whatever moment the kill hit, the file is whole
        assert len(doc.addresses) == 2000 and doc.lineage == "L" and doc.serial >= 1
        backup = LocalFileStore(path).backup_path
        if doc.serial > 1:  # the backup, too, is a whole document (killed between link and rename: equal)
            assert json.loads(backup.read_text())["serial"] in (doc.serial - 1, doc.serial)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 3  # at most one temp file per killed writer, never read as state


def test_open_store_picks_postgres_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    monkeypatch.setenv("JOBRUNNER_STATE_URL", "postgresql://ci@127.0.0.1:1/jobrunner?workspace=nlp")
    store = open_store(WorkspaceConfig(), tmp_path)  # built lazily: no connection is made here
    assert type(store).__name__ == "PostgresStore" and isinstance(store, StateStore)
    monkeypatch.delenv("JOBRUNNER_STATE_URL")
    store = open_store(WorkspaceConfig(state_backend="postgres", state_url="postgresql://ci@127.0.0.1:1/j"), tmp_path)
    assert type(store).__name__ == "PostgresStore"
