"""`state.json.bak` is a copy, never a second name of the state file's inode.

If the backup were a hard link to the state file, one in-place write to the state file (an editor,
a truncating tool, a torn block) would damage both, and the way back the corrupt-state message
offers would be gone. These tests check the inode (st_ino) after every kind of write: successful
ones, failed ones (ENOSPC at each fsync of a write), and a `kill -9` at every crash point inside a
write; and that damaging the state file in place leaves the backup readable.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobrunner.errors import StateError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, StateDoc

WRITE_CRASH_POINTS = ("state.backup_kept", "state.tmp_partial", "state.tmp_written", "state.renamed")


def _doc(*names: str) -> StateDoc:
    doc = StateDoc(lineage="L")
    for name in names:
        doc.addresses[f"Training/{name}"] = AddressState(
            address=f"Training/{name}", kind="Training", job_kind="training", provider="local",
            file="jobs.yaml", remote_id=f"r-{name}", status="succeeded")
    return doc


def _assert_separate_and_backup_survives_damage(store: LocalFileStore) -> None:
    state_ino, backup_ino = os.stat(store.path).st_ino, os.stat(store.backup_path).st_ino
    assert state_ino != backup_ino, "state.json and state.json.bak are one inode"
    backup_before = store.backup_path.read_bytes()
    with open(store.path, "r+b") as fh:  # in-place damage, as an editor or a torn write would do
        fh.truncate(5)
    assert store.backup_path.read_bytes() == backup_before
    assert json.loads(backup_before)["lineage"] == "L"


def test_successful_saves_keep_the_backup_a_separate_file(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc("a")
    store.save(doc)  # the first write has no previous document to keep
    for _ in range(2):
        store.save(doc)
        assert os.stat(store.path).st_ino != os.stat(store.backup_path).st_ino
    assert json.loads(store.backup_path.read_text())["serial"] == 2
    _assert_separate_and_backup_survives_damage(store)


@pytest.mark.parametrize("failing_fsync", [1, 2])
def test_a_write_failing_with_enospc_leaves_the_backup_a_separate_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_fsync: int) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc("a")
    store.save(doc)
    store.save(doc)
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing_fsync:  # 1: while keeping the backup, 2: while writing the new state
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    doc.addresses.update(_doc("b").addresses)
    with pytest.raises(StateError, match="No space left on device"):
        store.save(doc)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads(store.path.read_text())["serial"] == 2  # the old state is untouched
    assert not list(tmp_path.glob(".state.json*.tmp"))
    _assert_separate_and_backup_survives_damage(store)


def test_a_workspace_whose_backup_is_a_hard_link_is_split_by_the_next_save(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc("a")
    store.save(doc)
    store.backup_path.unlink(missing_ok=True)
    os.link(store.path, store.backup_path)  # what an older jobrunner could leave after a failed write
    store.save(doc)
    _assert_separate_and_backup_survives_damage(store)


@pytest.mark.parametrize("point", WRITE_CRASH_POINTS)
def test_kill_9_inside_a_state_write_leaves_the_backup_a_separate_file(tmp_path: Path, point: str) -> None:
    state = tmp_path / "state.json"
    script = textwrap.dedent(f"""
        import os
        from jobrunner.state.local_file import LocalFileStore
        from jobrunner.state.model import AddressState, StateDoc
        store = LocalFileStore({str(state)!r})
        doc = StateDoc(lineage="L")
        store.save(doc)
        store.save(doc)
        doc.addresses["Training/x"] = AddressState(address="Training/x", kind="Training", job_kind="training",
                                                   provider="local", file="jobs.yaml")
        os.environ["JOBRUNNER_TEST_CRASH_AT"] = {point!r}
        store.save(doc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    store = LocalFileStore(state)
    assert store.load().serial in (2, 3)  # whole, old or new
    _assert_separate_and_backup_survives_damage(store)
