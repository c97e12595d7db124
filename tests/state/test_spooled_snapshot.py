"""Snapshots are serialized straight into their temporary file (a spool), never held whole: the
bytes on disk are exactly those of a whole serialization, and a save that fails leaves no file."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.errors import StateError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, StateDoc
from jobrunner.state.serialize import iter_chunks, serialize, serialize_chunks


def _doc(n: int) -> StateDoc:
    doc = StateDoc(lineage="lineage-1", serial=3, workspace_id="ws-1")
    for i in range(n):
        address = f"PredictionBatch/b[item-{i:04d}]"
        doc.addresses[address] = AddressState(
            address=address, kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml",
            fingerprint=f"{i:064x}", remote_id=f"r{i}", status="succeeded", attempts=1,
            outputs={"output": {"text": "é" * (i % 7), "n": i}}, inputs={"input": {"prompt": f"p{i}"}},
            history=[Attempt(f"r{i}", f"{i:064x}", 1, "2026-01-01T00:00:00Z", "succeeded")],
        )
    return doc


def _temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".state.json.*.tmp"))


@pytest.mark.parametrize("n", [0, 1, 2, 2500])
def test_pieces_are_the_whole_serialization(n: int) -> None:
    doc = _doc(n)
    assert "".join(iter_chunks(doc)) == serialize(doc)
    assert list(iter_chunks(doc)) == serialize_chunks(doc)


@pytest.mark.parametrize("n", [0, 3, 2500])  # 2,500 addresses: several 1 MiB write batches
def test_snapshot_on_disk_is_the_whole_serialization(tmp_path: Path, n: int) -> None:
    doc = _doc(n)
    store = LocalFileStore(tmp_path / "state.json")
    store.save(doc)
    assert (tmp_path / "state.json").read_text(encoding="utf-8") == serialize(doc) + "\n"
    assert _temp_files(tmp_path) == []
    assert LocalFileStore(tmp_path / "state.json").load().to_json() == doc.to_json()


def test_prepared_snapshot_waits_in_its_spool_until_written(tmp_path: Path) -> None:
    doc = _doc(3)
    store = LocalFileStore(tmp_path / "state.json")
    prepared = store.prepare(doc)
    assert prepared.spool is not None and prepared.record is None
    spooled = Path(prepared.spool.path)
    assert _temp_files(tmp_path) == [spooled]
    assert not (tmp_path / "state.json").exists()  # nothing replaced before write_prepared
    assert prepared.text == serialize(doc)
    doc.addresses.clear()  # the document may change meanwhile (the apply engine goes on)
    store.write_prepared(prepared)
    assert not spooled.exists() and _temp_files(tmp_path) == []
    assert len(LocalFileStore(tmp_path / "state.json").load().addresses) == 3


def test_a_value_that_is_not_json_leaves_no_spool(tmp_path: Path) -> None:
    doc = _doc(3)
    doc.addresses["PredictionBatch/b[item-0001]"].outputs["bad"] = float("nan")
    store = LocalFileStore(tmp_path / "state.json")
    with pytest.raises(StateError, match="not JSON"):
        store.save(doc)
    assert doc.serial == 3  # not bumped
    assert _temp_files(tmp_path) == [] and not (tmp_path / "state.json").exists()


def test_a_refused_write_removes_its_spool(tmp_path: Path) -> None:
    """Another process wrote state since this one read it: the write is refused before the rename,
    and the spooled document does not stay behind."""
    path = tmp_path / "state.json"
    LocalFileStore(path).save(_doc(1))
    mine = LocalFileStore(path)
    doc = mine.load()
    other = LocalFileStore(path)
    newer = other.load()
    other.save(newer)
    other.save(newer)
    prepared = mine.prepare(doc)
    with pytest.raises(StateError):
        mine.write_prepared(prepared)
    assert _temp_files(tmp_path) == []
