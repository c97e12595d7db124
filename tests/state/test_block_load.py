"""Loading a big snapshot a block of lines at a time: the same document as a whole parse, the
collector paused meanwhile, and anything not in jobrunner's layout still reported exactly."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from jobrunner.errors import StateError
from jobrunner.state import local_file
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, StateDoc


def _doc(n: int) -> StateDoc:
    doc = StateDoc(lineage="lin-block")
    for i in range(n):
        a = f"PredictionBatch/b[item-{i:04d}]"
        doc.addresses[a] = AddressState(
            address=a, kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml",
            fingerprint=f"{i:064x}", remote_id=f"r{i}", status="succeeded", attempts=1,
            outputs={"output": {"text": f"out {i}", "n": [i, i + 1]}, "metrics": {"predict_time": 0.5}},
            inputs={"input": {"prompt": f"p{i}"}, "kind": "prediction", "provider": "local", "version": "v" * 64},
            history=[Attempt(remote_id=f"r{i}", fingerprint=f"{i:064x}", attempt=1,
                             created_at="2026-01-01T00:00:00Z", status="succeeded")])
    return doc


def test_a_snapshot_larger_than_a_block_loads_as_the_whole_parse(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_file, "_BLOCK_BYTES", 2000)  # many blocks, one ending mid-document
    store = LocalFileStore(tmp_path / "state.json")
    store.save(_doc(37))
    loaded = store.load()
    whole = StateDoc.from_json(json.loads(store.path.read_text()))
    assert list(loaded.addresses) == list(whole.addresses) == sorted(_doc(37).addresses)
    assert loaded.to_json() == whole.to_json() == {**_doc(37).to_json(), "serial": 1}
    # Strings every address repeats are shared: values always, keys within a block (one decode).
    a, b, c = (loaded.addresses[f"PredictionBatch/b[item-{i:04d}]"] for i in (0, 1, 36))
    assert a.inputs is not None and c.inputs is not None and a.inputs["version"] is c.inputs["version"]
    assert a.status is c.status and a.file is c.file
    assert next(iter(a.outputs)) is next(iter(b.outputs))


def test_the_collector_is_paused_during_a_load_and_restored_after(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    store.save(_doc(3))
    seen: list[bool] = []
    real = AddressState.from_json.__func__  # type: ignore[attr-defined]

    def spy(cls: type[AddressState], data: dict, **kw: object) -> AddressState:
        seen.append(gc.isenabled())
        return real(cls, data, **kw)

    monkeypatch.setattr(AddressState, "from_json", classmethod(spy))
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    store.load()
    assert seen == [False, False, False] and gc.isenabled()
    assert gc.get_freeze_count() == frozen  # a small document: nothing frozen
    gc.disable()
    try:
        store.load()
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


@pytest.mark.parametrize("damage", [
    lambda lines: [lines[0], lines[1].rstrip("\n") + lines[2], *lines[3:]],  # two addresses on one line
    lambda lines: [lines[0], lines[1], lines[1], *lines[2:]],  # one address twice
    lambda lines: [lines[0], lines[1][:-20] + "\n", *lines[2:]],  # a cut line
])
def test_anything_else_falls_back_to_the_whole_parse(tmp_path: Path, damage: object) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    store.save(_doc(4))
    lines = store.path.read_text().splitlines(keepends=True)
    store.path.write_text("".join(damage(lines)))  # type: ignore[operator]
    fresh = LocalFileStore(tmp_path / "state.json")
    try:
        doc = fresh.load()
    except StateError as exc:  # the whole parse names the problem
        assert "state.json" in str(exc)
    else:  # valid JSON after all (two members on one line): read exactly as the whole parse reads it
        assert doc.to_json() == StateDoc.from_json(json.loads(store.path.read_text())).to_json()


def test_a_big_document_is_frozen_out_of_later_collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobrunner.state import gcpause

    monkeypatch.setattr(gcpause, "FREEZE_MIN_ADDRESSES", 3)
    store = LocalFileStore(tmp_path / "state.json")
    store.save(_doc(3))
    try:
        doc = store.load()
        assert gc.get_freeze_count() > 0 and len(doc.addresses) == 3
    finally:
        gc.unfreeze()
