"""A loaded state keeps each address's `outputs` and `inputs` packed until they are read: the
state file written by the previous jobrunner loads field for field as it did, reading a packed
value gives the very same data (and keeps it, so in-place changes are saved), and a document
saved without reading them writes the same bytes it read."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import StateError
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc, field_values

FIXTURE = Path(__file__).parent / "fixtures" / "state_79a626f.json"  # written by jobrunner at 79a626f


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / ".jobrunner" / "state.json"
    path.parent.mkdir()
    shutil.copyfile(FIXTURE, path)
    return path


def _stored(st: AddressState, name: str) -> Any:
    """What the slot behind `outputs` or `inputs` holds (bytes while packed)."""
    return getattr(st, f"_{name}_slot")


def _expected(data: dict[str, Any]) -> dict[str, Any]:
    """Each field of an address as the file records it, history and intent as their records."""
    out = dict(data)
    out["history"] = [Attempt(**a) for a in data["history"]]
    out["intent"] = Intent(**data["intent"]) if data["intent"] else None
    return out


def test_a_state_file_of_the_previous_jobrunner_loads_field_for_field(tmp_path: Path) -> None:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    doc = LocalFileStore(_copy(tmp_path)).load()
    assert (doc.serial, doc.lineage, doc.workspace_id, doc.recovered_at) == (1, "fixture-79a626f", "ws-fixture", None)
    assert list(doc.addresses) == list(raw["addresses"])
    for address, data in raw["addresses"].items():
        st = doc.addresses[address]
        for name, value in _expected(data).items():
            got = getattr(st, name)
            assert got == value and type(got) is type(value), (address, name)
        assert st.to_json() == data
    # Floats bit for bit, and the types JSON distinguishes (an int is not a float, -0.0 keeps its sign).
    out = doc.addresses["PredictionBatch/echo[item-00]"].outputs
    assert repr(out["metrics"]["predict_time"]) == "0.30000000000000004"
    assert out["output"]["big"] == 2**70 and repr(out["output"]["neg"]) == "-0.0"
    assert out["output"]["list"] == [1, 2.5, None, True, "x"] and type(out["output"]["list"][0]) is int


def test_outputs_and_inputs_stay_packed_until_read_then_stay_read(tmp_path: Path) -> None:
    doc = LocalFileStore(_copy(tmp_path)).load()
    st = doc.addresses["PredictionBatch/echo[item-01]"]
    assert type(_stored(st, "outputs")) is bytes and type(_stored(st, "inputs")) is bytes
    peeked = st.peek_outputs()
    assert peeked["output"]["seed"] == 1 and type(_stored(st, "outputs")) is bytes
    assert st.peek_inputs() == {"input": {"prompt": "p 1 é ☃", "seed": 1}, "kind": "prediction",
                                "provider": "local", "version": "a" * 64}
    first = st.outputs
    assert first is st.outputs and type(_stored(st, "outputs")) is dict
    # Empty outputs and absent inputs are held as they are.
    assert doc.addresses["Model/mine"].inputs is None and doc.addresses["Training/tune"].outputs == {}
    # Shared like an unpacked load shares them: keys and the batch's model version.
    other = doc.addresses["PredictionBatch/echo[item-02]"]
    assert next(iter(first)) is next(iter(other.outputs))
    assert st.inputs is not None and other.inputs is not None and st.inputs["version"] is other.inputs["version"]


def test_a_change_in_place_after_reading_is_saved(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    store = LocalFileStore(path)
    doc = store.load()
    doc.addresses["PredictionBatch/echo[item-00]"].outputs["output"]["seed"] = 42
    inputs = doc.addresses["Training/tune"].inputs
    assert inputs is not None
    inputs["input"]["epochs"] = 4
    store.save(doc)
    again = LocalFileStore(path).load()
    assert again.addresses["PredictionBatch/echo[item-00]"].outputs["output"]["seed"] == 42
    assert again.addresses["Training/tune"].inputs == {**inputs, "input": {"epochs": 4}}


def test_saving_without_reading_them_writes_the_same_document(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    store = LocalFileStore(path)
    doc = store.load()
    store.save(doc)  # a snapshot of packed addresses
    expected = FIXTURE.read_text(encoding="utf-8").replace('"serial":1,', '"serial":2,', 1)
    assert path.read_text(encoding="utf-8") == expected


def test_journal_records_replay_packed_and_round_trip(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    store = LocalFileStore(path)
    with store.lock("test"):
        doc = store.load()
        st = doc.addresses["PredictionBatch/echo[item-10]"]
        st.remote_id, st.status, st.intent = "rid10", "succeeded", None
        st.outputs = {"output": {"text": "done"}}
        st.history.append(Attempt("rid10", st.fingerprint or "", 1, "2026-01-01T00:04:00Z", "succeeded"))
        store.save(doc, changed=["PredictionBatch/echo[item-10]"])
    assert store.journal_path.is_file()
    loaded = LocalFileStore(path).load()
    replayed = loaded.addresses["PredictionBatch/echo[item-10]"]
    assert type(_stored(replayed, "outputs")) is bytes
    assert field_values(replayed) == field_values(st)
    assert loaded.to_json()["addresses"] == doc.to_json()["addresses"]


def test_an_address_of_another_shape_takes_the_general_path(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # An older writer without `lifecycle`: loads, with its outputs packed all the same.
    lines[1] = lines[1].replace('"lifecycle":null,', "")
    path.write_text("".join(lines), encoding="utf-8")
    doc = LocalFileStore(path).load()
    model = doc.addresses["Model/mine"]
    assert model.lifecycle is None and type(_stored(model, "outputs")) is bytes
    assert model.outputs == {"name": "me/mine", "url": "https://replicate.com/me/mine"}
    # A field jobrunner does not know is an error naming the file, as before.
    lines[1] = lines[1].replace('"error":null,', '"error":null,"extra":1,')
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(StateError, match="invalid entry"):
        LocalFileStore(path).load()


def test_states_compare_by_their_values_packed_or_not(tmp_path: Path) -> None:
    doc = LocalFileStore(_copy(tmp_path)).load()
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    whole = StateDoc.from_json(raw)
    for address, st in doc.addresses.items():
        assert field_values(st) == field_values(whole.addresses[address])
        assert st == whole.addresses[address]
        assert st == AddressState.from_json(raw["addresses"][address], pack=True)
