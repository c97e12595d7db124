"""The compact per-address record: slots instead of a `__dict__`, the same JSON in and out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc, field_values


def _state(i: int = 1) -> AddressState:
    return AddressState(
        address=f"PredictionBatch/b[k{i}]", kind="PredictionBatch", job_kind="prediction", provider="local",
        file="b.yaml", fingerprint="f" * 64, remote_id=f"r{i}", status="succeeded", attempts=2,
        outputs={"output": {"text": "é", "n": [1, 2.5, None]}, "metrics": {"predict_time": 0.1}},
        error="boom", inputs={"input": {"prompt": "p"}, "kind": "prediction", "version": "v" * 64},
        history=[Attempt("r0", "e" * 64, 1, "2026-01-01T00:00:00Z", "failed", "proj"),
                 Attempt(f"r{i}", "f" * 64, 2, "2026-01-01T00:01:00Z", "succeeded")],
        intent=Intent("f" * 64, 3, "2026-01-01T00:02:00Z", "d" * 64, {"input": {"prompt": "p"}}),
        updated_at="2026-01-01T00:03:00Z", lifecycle={"prevent_cancel": True}, project_id="proj",
    )


def test_records_have_no_instance_dict() -> None:
    st = _state()
    for obj in (st, st.history[0], st.intent):
        assert not hasattr(obj, "__dict__")
        with pytest.raises(AttributeError):
            obj.not_a_field = 1  # type: ignore[union-attr]


def test_json_round_trip_keeps_every_field() -> None:
    st = _state()
    data = st.to_json()
    assert list(data) == [f for f in AddressState.__dataclass_fields__]
    assert data["history"][0] == {"remote_id": "r0", "fingerprint": "e" * 64, "attempt": 1,
                                  "created_at": "2026-01-01T00:00:00Z", "status": "failed", "project_id": "proj"}
    assert data["intent"]["inputs"] == {"input": {"prompt": "p"}}
    again = AddressState.from_json(json.loads(json.dumps(data)))
    assert again == st
    assert field_values(again) == field_values(st)
    assert again.to_json() == data
    # Strings every address repeats are shared, values unchanged.
    other = AddressState.from_json(json.loads(json.dumps(_state(2).to_json())))
    assert other.kind is again.kind and other.status is again.status
    assert other.history[1].fingerprint is other.fingerprint


def test_field_values_see_in_place_changes() -> None:
    st, copy = _state(), AddressState.from_json(_state().to_json())
    assert field_values(st) == field_values(copy)
    copy.history[1].status = "canceled"
    assert field_values(st) != field_values(copy)


def test_store_round_trip_of_compact_records(tmp_path: Path) -> None:
    doc = StateDoc(lineage="l", serial=1)
    for i in range(3):
        doc.addresses[f"PredictionBatch/b[k{i}]"] = _state(i)
    store = LocalFileStore(tmp_path / "state.json")
    store.save(doc)
    loaded = LocalFileStore(tmp_path / "state.json").load()
    assert loaded.to_json() == doc.to_json()
    assert loaded.addresses == doc.addresses
