"""Compacting snapshots copy the text each address's last journal record encoded
(`state/textcache.py`): the snapshot is byte for byte the whole document serialized afresh, only
the addresses a save names are encoded again, and the texts are dropped whenever they might be
wrong (a save naming nothing, another document, a secret learned since)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from jobrunner import redact
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.serialize import serialize
from jobrunner.state.textcache import AddressTexts
from tests.state.test_journal import _doc, _st


def _compacting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalFileStore:
    store = LocalFileStore(tmp_path / ".jobrunner" / "state.json")
    monkeypatch.setattr(store, "_compact_min", 0)  # compact as soon as the journal outgrows the snapshot
    return store


def test_a_compacting_snapshot_encodes_only_the_changed_addresses(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = _compacting(tmp_path, monkeypatch)
    doc = _doc(20)
    store.save(doc)  # a whole save: every address encoded (and none kept)
    assert store._texts.encoded == 20
    snapshots, i = store.snapshots, 0
    while store.snapshots == snapshots:  # until the first compaction, which keeps every text
        a = f"PredictionBatch/b[{i % 20:03d}]"
        doc.addresses[a].error = f"attempt {i}"
        store.save(doc, {a})
        i += 1
    encoded, snapshots = store._texts.encoded, store.snapshots
    for n in range(60):
        a = f"PredictionBatch/b[{(i + n) % 20:03d}]"
        doc.addresses[a].error = f"attempt {i + n}"
        store.save(doc, {a})
    assert store.snapshots > snapshots  # the journal was compacted again along the way
    assert store._texts.encoded == encoded + 60  # each named address once per save, nothing else
    assert store.path.read_text() == serialize(doc) + "\n" or store.journal_path.exists()
    assert LocalFileStore(store.path).load().to_json() == doc.to_json()


@settings(max_examples=40, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(0, 7), hs.sampled_from(["set", "del", "add"])), min_size=1, max_size=40))
def test_every_snapshot_is_the_document_serialized_afresh(tmp_path_factory, steps) -> None:
    store = LocalFileStore(tmp_path_factory.mktemp("s") / "state.json")
    store._compact_min = 0
    doc = _doc(5)
    store.save(doc)
    for n, (i, what) in enumerate(steps):
        a = f"PredictionBatch/b[{i:03d}]"
        if what == "del":
            doc.addresses.pop(a, None)
        elif what == "add" or a not in doc.addresses:
            doc.addresses[a] = _st(a, "starting")
        else:
            doc.addresses[a].outputs = {"output": {"n": n, "text": "é" * n}}
        before = store.snapshots
        store.save(doc, {a})
        if store.snapshots > before:
            assert store.path.read_text() == serialize(doc) + "\n"
    assert LocalFileStore(store.path).load().to_json() == doc.to_json()


def test_a_save_naming_nothing_another_document_or_new_secrets_start_over() -> None:
    texts = AddressTexts()
    doc = _doc(3)
    texts.begin(doc, set())
    for a, st in doc.addresses.items():
        texts.text(a, st)
    texts.begin(doc, {"PredictionBatch/b[000]"})
    for a, st in doc.addresses.items():
        texts.text(a, st)
    assert texts.encoded == 4  # only the named one again
    texts.begin(doc, None)  # drops every text and keeps none of its own
    texts.text("PredictionBatch/b[001]", doc.addresses["PredictionBatch/b[001]"])
    texts.begin(doc, set())
    texts.text("PredictionBatch/b[001]", doc.addresses["PredictionBatch/b[001]"])
    assert texts.encoded == 6
    other = _doc(3)
    texts.begin(other, set())
    texts.text("PredictionBatch/b[001]", other.addresses["PredictionBatch/b[001]"])
    assert texts.encoded == 7


def test_the_texts_do_not_keep_the_document_alive() -> None:
    import gc
    import weakref

    texts = AddressTexts()
    doc = _doc(3)
    texts.begin(doc, set())
    texts.text("PredictionBatch/b[001]", doc.addresses["PredictionBatch/b[001]"])
    gone = weakref.ref(doc)
    del doc
    gc.collect()
    assert gone() is None


def test_a_secret_learned_since_is_scrubbed_from_the_next_snapshot(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = _compacting(tmp_path, monkeypatch)
    doc = _doc(3)
    a = "PredictionBatch/b[001]"
    doc.addresses[a].error = "the model said hunter2-secret-value"
    store.save(doc)
    doc.addresses["PredictionBatch/b[002]"].status = "succeeded"
    store.save(doc, {"PredictionBatch/b[002]"})
    snapshots = store.snapshots
    redact.SECRETS.add("hunter2-secret-value")  # learnt mid-command (the conftest forgets it after)
    while store.snapshots == snapshots:  # until the journal is compacted into a snapshot
        doc.addresses["PredictionBatch/b[002]"].error = "x" * 200
        store.save(doc, {"PredictionBatch/b[002]"})
    assert "hunter2-secret-value" not in store.path.read_text()
    assert "hunter2-secret-value" in doc.addresses[a].error


def test_texts_are_kept_up_to_the_limit_only() -> None:
    texts = AddressTexts(limit=2_000)
    doc = _doc(50)
    texts.begin(doc, set())
    for a, st in doc.addresses.items():
        texts.text(a, st)
    texts.begin(doc, set())
    for a, st in doc.addresses.items():
        texts.text(a, st)
    assert 50 < texts.encoded < 100  # the first few were kept, the rest encoded again
    assert texts._bytes <= 2_000
