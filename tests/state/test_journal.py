"""The state journal: saves that name their changed addresses append just those, checksummed.

Loading replays the journal onto the snapshot; a torn last record (a write cut short, never
acknowledged) is dropped; damage to an acknowledged record is a clear error, never a silent loss;
a journal that outgrows the snapshot is compacted into a new snapshot.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import StateError
from jobrunner.state import local_file
from jobrunner.state.local_file import LocalFileStore, read_state_json
from jobrunner.state.model import AddressState, StateDoc


def _st(address: str, status: str = "running") -> AddressState:
    return AddressState(address=address, kind="PredictionBatch", job_kind="prediction", provider="local",
                        file="jobs.yaml", remote_id=f"r-{address[-3:]}", status=status)


def _doc(n: int) -> StateDoc:
    doc = StateDoc(lineage="lin-1")
    for i in range(n):
        a = f"PredictionBatch/b[{i:03d}]"
        doc.addresses[a] = _st(a)
    return doc


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / ".jobrunner" / "state.json")


def _journal_lines(store: LocalFileStore) -> list[dict]:
    return [json.loads(line.split(b" ", 1)[1]) for line in store.journal_path.read_bytes().splitlines()]


def test_a_save_naming_its_addresses_appends_only_those(store: LocalFileStore) -> None:
    doc = _doc(50)
    store.save(doc)  # the first save is a snapshot
    snapshot = store.path.read_bytes()
    doc.addresses["PredictionBatch/b[007]"].status = "succeeded"
    del doc.addresses["PredictionBatch/b[009]"]
    store.save(doc, {"PredictionBatch/b[007]", "PredictionBatch/b[009]"})
    assert store.path.read_bytes() == snapshot  # the snapshot is not rewritten
    header, record = _journal_lines(store)
    assert header["serial"] == 1 and header["lineage"] == "lin-1"
    assert record["serial"] == 2
    assert list(record["set"]) == ["PredictionBatch/b[007]"] and record["del"] == ["PredictionBatch/b[009]"]
    loaded = LocalFileStore(store.path).load()
    assert loaded.serial == 2
    assert loaded.addresses["PredictionBatch/b[007]"].status == "succeeded"
    assert "PredictionBatch/b[009]" not in loaded.addresses and len(loaded.addresses) == 49
    assert loaded.to_json() == doc.to_json()


def test_a_save_serializes_only_the_changed_addresses(store: LocalFileStore, monkeypatch) -> None:
    doc = _doc(300)
    store.save(doc)
    calls = []
    real = AddressState.to_json

    def counting_to_json(self: AddressState, **options: Any) -> dict[str, Any]:
        calls.append(self.address)
        return real(self, **options)

    monkeypatch.setattr(AddressState, "to_json", counting_to_json)
    doc.addresses["PredictionBatch/b[100]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[100]"})
    assert calls == ["PredictionBatch/b[100]"]


def test_a_torn_last_record_is_dropped_and_the_next_append_replaces_it(store: LocalFileStore) -> None:
    doc = _doc(3)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    good = store.journal_path.read_bytes()
    # A write cut short: part of the next record, no newline (the save never returned).
    with open(store.journal_path, "ab") as fh:
        fh.write(b'1234abcd {"del":[],"head":{},"serial":3,"set":{"Predic')
    again = LocalFileStore(store.path)
    loaded = again.load()
    assert loaded.serial == 2 and loaded.addresses["PredictionBatch/b[000]"].status == "succeeded"
    loaded.addresses["PredictionBatch/b[001]"].status = "failed"
    again.save(loaded, {"PredictionBatch/b[001]"})
    raw = store.journal_path.read_bytes()
    assert raw.startswith(good) and b"Predic'" not in raw and raw.endswith(b"\n")
    final = LocalFileStore(store.path).load()
    assert final.serial == 3 and final.addresses["PredictionBatch/b[001]"].status == "failed"


def test_a_tail_of_nul_bytes_is_a_torn_write_too(store: LocalFileStore) -> None:
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    with open(store.journal_path, "ab") as fh:
        fh.write(b"\0" * 300)
    assert LocalFileStore(store.path).load().serial == 2


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_damaged_acknowledged_record_is_an_error_naming_the_way_back(store: LocalFileStore, where: str) -> None:
    doc = _doc(3)
    store.save(doc)
    for i in range(3):
        doc.addresses[f"PredictionBatch/b[00{i}]"].status = "succeeded"
        store.save(doc, {f"PredictionBatch/b[00{i}]"})
    lines = store.journal_path.read_bytes().splitlines(keepends=True)
    n = 2 if where == "middle" else len(lines) - 1
    lines[n] = lines[n].replace(b"succeeded", b"succeedex")  # complete line, checksum no longer matches
    store.journal_path.write_bytes(b"".join(lines))
    with pytest.raises(StateError) as err:
        LocalFileStore(store.path).load()
    assert f"is damaged at line {n + 1}: checksum mismatch" in err.value.message
    assert str(store.journal_path) in err.value.message
    assert "restore-backup" in (err.value.hint or "")


def test_a_journal_that_outgrows_the_snapshot_is_compacted(store: LocalFileStore, monkeypatch) -> None:
    monkeypatch.setattr(store, "_compact_min", 0)
    doc = _doc(5)
    store.save(doc)
    for i in range(40):
        a = f"PredictionBatch/b[00{i % 5}]"
        doc.addresses[a].error = f"attempt {i}"
        store.save(doc, {a})
    assert store.snapshots >= 3 and store.journal_records >= 20
    # Never more journal than about the snapshot's size.
    size = store.journal_path.stat().st_size if store.journal_path.exists() else 0
    assert size <= 2 * store.path.stat().st_size
    assert LocalFileStore(store.path).load().to_json() == doc.to_json()


def test_a_whole_save_compacts_and_removes_the_journal(store: LocalFileStore) -> None:
    doc = _doc(4)
    store.save(doc)
    doc.addresses["PredictionBatch/b[002]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[002]"})
    assert store.journal_path.exists()
    store.save(doc)
    assert not store.journal_path.exists()
    on_disk = json.loads(store.path.read_text())
    assert on_disk["serial"] == 3 and on_disk["addresses"]["PredictionBatch/b[002]"]["status"] == "succeeded"


def test_a_journal_of_an_older_snapshot_is_ignored(store: LocalFileStore) -> None:
    """A crash after a new snapshot replaced the old one and before the journal was removed: the
    snapshot already holds every record of that journal."""
    doc = _doc(3)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    stale = store.journal_path.read_bytes()
    doc.addresses["PredictionBatch/b[000]"].status = "failed"  # newer than the journal's record
    store.save(doc)
    store.journal_path.write_bytes(stale)
    loaded = LocalFileStore(store.path).load()
    assert loaded.serial == 3 and loaded.addresses["PredictionBatch/b[000]"].status == "failed"


def test_the_journal_starts_with_a_backup_copy_of_its_snapshot(store: LocalFileStore) -> None:
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    assert store.backup_path.read_bytes() == store.path.read_bytes()
    assert os.stat(store.backup_path).st_ino != os.stat(store.path).st_ino


def test_a_deleted_snapshot_beside_its_journal_is_refused(store: LocalFileStore) -> None:
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    store.path.unlink()
    store.backup_path.unlink()
    with pytest.raises(StateError, match="is missing, but its journal"):
        LocalFileStore(store.path).load()


def test_a_journal_written_by_another_process_is_not_appended_to(store: LocalFileStore) -> None:
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[000]"})
    other = LocalFileStore(store.path)
    theirs = other.load()
    theirs.addresses["PredictionBatch/b[001]"].status = "failed"
    other.save(theirs, {"PredictionBatch/b[001]"})
    doc.addresses["PredictionBatch/b[000]"].status = "canceled"
    with pytest.raises(StateError, match="written by another process"):
        store.save(doc, {"PredictionBatch/b[000]"})
    assert doc.serial == 2  # not bumped by the refused save


def test_secrets_never_reach_the_journal(store: LocalFileStore, monkeypatch) -> None:
    from jobrunner import redact

    monkeypatch.setattr(redact, "known_secrets", lambda: ["hunter2-secret-value"])
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[000]"].error = "auth failed for token hunter2-secret-value"
    store.save(doc, {"PredictionBatch/b[000]"})
    assert b"hunter2-secret-value" not in store.journal_path.read_bytes()


def test_read_state_json_replays_the_journal(store: LocalFileStore) -> None:
    doc = _doc(2)
    store.save(doc)
    doc.addresses["PredictionBatch/b[001]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[001]"})
    assert json.loads(store.path.read_text())["addresses"]["PredictionBatch/b[001]"]["status"] == "running"
    assert read_state_json(store.path)["addresses"]["PredictionBatch/b[001]"]["status"] == "succeeded"


def test_compaction_floor_can_be_lowered_for_tests(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(local_file.COMPACT_ENV, "0")
    assert LocalFileStore(tmp_path / "s.json")._compact_min == 0


@pytest.mark.parametrize("n", [0, 1, 3, 2500])
def test_a_snapshot_written_in_pieces_is_the_whole_document_and_its_digest(store: LocalFileStore, n: int) -> None:
    from jobrunner.state.journal import snapshot_digest
    from jobrunner.state.serialize import serialize, serialize_chunks

    doc = _doc(n)
    assert "".join(serialize_chunks(doc)) == serialize(doc)
    store.save(doc)
    raw = store.path.read_bytes()
    assert raw == (serialize(doc) + "\n").encode("utf-8")
    assert store._snapshot is not None and store._snapshot[3] == snapshot_digest(raw)


def test_a_snapshot_is_read_line_by_line_or_whole_with_the_same_result(store: LocalFileStore) -> None:
    doc = _doc(30)
    doc.workspace_id = "ws-1"
    store.save(doc)
    by_line = LocalFileStore(store.path).load()
    assert by_line.to_json() == doc.to_json()
    # Re-indented by hand (not the layout jobrunner writes): read whole, same document.
    store.path.write_text(json.dumps(json.loads(store.path.read_text()), indent=2))
    assert LocalFileStore(store.path).load().to_json() == doc.to_json()


@pytest.mark.parametrize("damage", ["drop-closing", "drop-comma", "bad-entry", "trailing"])
def test_a_damaged_snapshot_in_the_line_layout_is_reported_as_before(store: LocalFileStore, damage: str) -> None:
    doc = _doc(5)
    store.save(doc)
    lines = store.path.read_text().splitlines(keepends=True)
    if damage == "drop-closing":
        lines = lines[:-1]
    elif damage == "drop-comma":
        lines[2] = lines[2].replace("},\n", "}\n")
    elif damage == "bad-entry":
        lines[2] = lines[2].replace('"kind"', '"kindz"')
    else:
        lines.append("{}\n")
    store.path.write_text("".join(lines))
    with pytest.raises(StateError) as err:
        LocalFileStore(store.path).load()
    assert "corrupt or truncated" in err.value.message or "invalid entry" in err.value.message
