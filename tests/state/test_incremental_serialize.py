"""State saves reuse the serialized lines of unchanged addresses, with byte-identical output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.errors import StateError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc
from jobrunner.state.serialize import IncrementalSerializer, serialize


def _doc(n: int) -> StateDoc:
    doc = StateDoc(lineage="lineage-1", serial=4)
    for i in range(n):
        address = f"PredictionBatch/b[item-{i:03d}]"
        doc.addresses[address] = AddressState(
            address=address, kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml",
            fingerprint=f"{i:064x}", remote_id=f"r{i}", status="running", attempts=1,
            outputs={"output": {"prompt": f"p{i}", "tags": ["é", i]}}, inputs={"prompt": f"p{i}"},
            history=[Attempt(f"r{i}", f"{i:064x}", 1, "2026-01-01T00:00:00Z", "running")],
        )
    return doc


def _full(doc: StateDoc) -> str:
    """The layout written before incremental saves existed: compact JSON, one address per line."""
    data = doc.to_json()
    addresses = data.pop("addresses")
    head = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if not addresses:
        return head[:-1] + ',"addresses":{}}'
    lines = [json.dumps(k, ensure_ascii=False) + ":"
             + json.dumps(v, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
             for k, v in addresses.items()]
    return head[:-1] + ',"addresses":{\n' + ",\n".join(lines) + "\n}}"


def test_same_bytes_as_a_full_serialization() -> None:
    assert serialize(StateDoc(lineage="x")) == _full(StateDoc(lineage="x"))
    doc = _doc(5)
    assert serialize(doc) == _full(doc)
    assert json.loads(serialize(doc)) == doc.to_json()


def test_only_changed_addresses_are_dumped_even_when_mutated_in_place() -> None:
    doc = _doc(20)
    ser = IncrementalSerializer()
    assert ser.serialize(doc) == _full(doc) and ser.serialized == 20
    assert ser.serialize(doc) == _full(doc) and ser.serialized == 0
    # The reconciler mutates nested values in place: each kind of change must be seen.
    doc.addresses["PredictionBatch/b[item-001]"].outputs["output"]["tags"].append("new")
    doc.addresses["PredictionBatch/b[item-002]"].history[0].status = "succeeded"
    doc.addresses["PredictionBatch/b[item-003]"].history.append(Attempt("x", "f", 2, "t", "starting"))
    doc.addresses["PredictionBatch/b[item-004]"].intent = Intent("f", 2, "t", "d")
    doc.addresses["PredictionBatch/b[item-005]"].status = "succeeded"
    del doc.addresses["PredictionBatch/b[item-006]"]
    doc.addresses["PredictionBatch/a[new]"] = AddressState(
        address="PredictionBatch/a[new]", kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml"
    )
    doc.serial += 1
    assert ser.serialize(doc) == _full(doc)
    assert ser.serialized == 6


def test_a_value_that_is_not_json_leaves_the_cache_usable(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc(3)
    store.save(doc)
    doc.addresses["PredictionBatch/b[item-000]"].outputs["bad"] = float("nan")
    with pytest.raises(StateError):
        store.save(doc)
    del doc.addresses["PredictionBatch/b[item-000]"].outputs["bad"]
    doc.addresses["PredictionBatch/b[item-001]"].status = "failed"
    store.save(doc)
    assert LocalFileStore(tmp_path / "state.json").load().to_json() == doc.to_json()


def test_store_saves_round_trip_across_many_incremental_saves(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "state.json")
    doc = _doc(10)
    for i in range(10):
        doc.addresses[f"PredictionBatch/b[item-{i:03d}]"].status = "succeeded"
        store.save(doc)
        assert (tmp_path / "state.json").read_text() == _full(doc) + "\n"
    assert LocalFileStore(tmp_path / "state.json").load().to_json() == doc.to_json()
