"""The decoded copy of a big snapshot (jobrunner.state.loadcache): a load reads it only when it is
provably of the snapshot's very bytes, and then loads exactly what decoding the JSON loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.state import loadcache
from jobrunner.state import local_file as lf
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc, stored_values


@pytest.fixture(autouse=True)
def small_is_big(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few dozen addresses count as a big state here."""
    monkeypatch.setattr(loadcache, "MIN_ADDRESSES", 10)
    monkeypatch.setattr(lf, "_CACHED_MIN_BYTES", 0)


def _doc(n: int = 40) -> StateDoc:
    doc = StateDoc(lineage="lin", serial=1)
    for i in range(n):
        a = f"PredictionBatch/b[k{i:03d}]"
        doc.addresses[a] = AddressState(
            address=a, kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml",
            fingerprint=f"{i:064x}", remote_id=f"r{i}", status="succeeded", attempts=1,
            outputs={"output": {"text": f"out {i}", "big": 2**70 + i, "f": 0.1 * i}, "metrics": {"t": 1.5}},
            inputs={"input": {"prompt": f"p{i}"}, "kind": "prediction"}, updated_at="2026-01-01T00:00:00.000000Z",
            history=[Attempt(f"r{i}", f"{i:064x}", 1, "2026-01-01T00:00:00.000000Z", "succeeded")],
            intent=Intent("f" * 64, 2, "t", "d", {"input": {"x": i}}) if i == 3 else None,
            lifecycle={"on_remove": "keep"} if i == 5 else None)
    return doc


def _saved(tmp_path: Path, doc: StateDoc | None = None) -> Path:
    path = tmp_path / "state.json"
    LocalFileStore(path).save(doc or _doc())
    return path


def _same(a: StateDoc, b: StateDoc) -> None:
    assert a.to_json() == b.to_json()
    assert [stored_values(s)[10] for s in a.addresses.values()] == [stored_values(s)[10] for s in b.addresses.values()]


def _json_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> StateDoc:
    with monkeypatch.context() as m:
        m.setattr(lf, "_CACHED_MIN_BYTES", 1 << 62)
        return LocalFileStore(path).load()


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_a: object) -> None:
        raise AssertionError("the snapshot's JSON was decoded")

    monkeypatch.setattr(lf, "_read_by_line", refused)


def test_the_second_load_reads_the_copy_and_loads_the_same_document(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    first = LocalFileStore(path).load()
    assert loadcache.cache_path(path).is_file()
    with monkeypatch.context() as m:
        _no_decoding(m)
        second = LocalFileStore(path).load()
    _same(first, second)
    _same(second, _json_load(path, monkeypatch))


def test_journal_records_are_replayed_on_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    store = LocalFileStore(path)
    doc = store.load()  # writes the copy
    doc.addresses["PredictionBatch/b[k007]"].status = "failed"
    del doc.addresses["PredictionBatch/b[k008]"]
    store.save(doc, changed=["PredictionBatch/b[k007]", "PredictionBatch/b[k008]"])
    assert store.journal_path.is_file()
    with monkeypatch.context() as m:
        _no_decoding(m)
        again = LocalFileStore(path).load()
    assert again.addresses["PredictionBatch/b[k007]"].status == "failed"
    assert "PredictionBatch/b[k008]" not in again.addresses
    _same(again, _json_load(path, monkeypatch))


def test_a_snapshot_edited_in_place_is_decoded_not_taken_from_the_copy(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    LocalFileStore(path).load()
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"text":"out 12"', b'"text":"OUT 12"'))  # same size, other bytes
    loaded = LocalFileStore(path).load()
    assert loaded.addresses["PredictionBatch/b[k012]"].outputs["output"]["text"] == "OUT 12"


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "other version", "other fields", "garbage"])
def test_a_copy_that_does_not_read_back_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    damage: str) -> None:
    path = _saved(tmp_path)
    LocalFileStore(path).load()
    cache = loadcache.cache_path(path)
    raw = cache.read_bytes()
    if damage == "flipped byte":
        cache.write_bytes(raw[:-50] + bytes([raw[-50] ^ 1]) + raw[-49:])
    elif damage == "truncated":
        cache.write_bytes(raw[:-10])
    elif damage == "other version":
        monkeypatch.setattr(loadcache, "_FORMAT", "jobrunner 0.0.0 decoded snapshot 1")
    elif damage == "other fields":  # a jobrunner whose address state declares its fields otherwise
        monkeypatch.setattr(loadcache, "_FIELDS", [list(reversed(loadcache._FIELDS[0])), *loadcache._FIELDS[1:]])
    else:
        cache.write_bytes(b"\x00" * len(raw))
    loaded = LocalFileStore(path).load()
    _same(loaded, _json_load(path, monkeypatch))


def test_small_states_leave_no_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadcache, "MIN_ADDRESSES", 1000)
    path = _saved(tmp_path)
    LocalFileStore(path).load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_an_apply_that_wrote_a_snapshot_leaves_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    store = LocalFileStore(path)
    store.save(_doc())
    store.leave_decoded_copy()
    assert loadcache.cache_path(path).is_file()
    with monkeypatch.context() as m:
        _no_decoding(m)
        loaded = LocalFileStore(path).load()
    _same(loaded, _json_load(path, monkeypatch))


def test_an_apply_leaves_no_copy_of_a_snapshot_the_next_load_decodes_quickly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below `_LEAVE_COPY_TIMES` the size a load looks for a copy of, the apply does not decode its
    snapshot again after the run; the next load decodes it and leaves the copy then."""
    path = tmp_path / "state.json"
    store = LocalFileStore(path)
    store.save(_doc())
    size = path.stat().st_size
    monkeypatch.setattr(lf, "_CACHED_MIN_BYTES", size // lf._LEAVE_COPY_TIMES + 1)
    assert store.leave_decoded_copy() is None
    assert not loadcache.cache_path(path).exists()
    loaded = LocalFileStore(path).load()  # MIN_ADDRESSES (10 here) reached: this load leaves it
    assert loadcache.cache_path(path).is_file()
    _same(loaded, _json_load(path, monkeypatch))
    loadcache.cache_path(path).unlink()
    monkeypatch.setattr(lf, "_CACHED_MIN_BYTES", size // lf._LEAVE_COPY_TIMES)  # as big as it must be
    assert store.leave_decoded_copy() is not None
    assert loadcache.cache_path(path).is_file()
