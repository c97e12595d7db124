"""Canonical JSON and digests: same meaning, same bytes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.fingerprint import FieldFingerprints, canonical_json, file_digest, fingerprint, is_file_marker, short
from jobrunner.resources import JobKind

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=10)


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    a = {"b": [1, {"y": 2, "x": 1}], "a": "é"}
    b = {"a": "é", "b": [1, {"x": 1, "y": 2}]}
    assert canonical_json(a) == canonical_json(b) == '{"a":"é","b":[1,{"x":1,"y":2}]}'
    assert fingerprint(a) == fingerprint(b) == hashlib.sha256(canonical_json(a).encode()).hexdigest()


def test_types_matter() -> None:
    assert fingerprint({"n": 5}) != fingerprint({"n": "5"})
    assert fingerprint({"n": True}) != fingerprint({"n": 1})


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_file_digest_follows_content(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_bytes(b"hello\n")
    assert file_digest(f) == hashlib.sha256(b"hello\n").hexdigest()
    f.write_bytes(b"hello, world\n")  # size changes: the cache notices
    assert file_digest(f) == hashlib.sha256(b"hello, world\n").hexdigest()


def test_helpers() -> None:
    assert is_file_marker({"$file": "a"}) and not is_file_marker({"$file": "a", "x": 1})
    assert short("abcdef" * 10) == "abcdefabcdef" and short(None) == "(known after apply)"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _json_values, max_size=5), st.text(max_size=4), _json_values)
def test_field_fingerprints_are_the_fingerprint_of_the_whole_mapping(head: dict, field: str, value: object) -> None:
    """A batch's rows are fingerprinted by splicing each input into its head's JSON: the same bytes."""
    assert FieldFingerprints(head, field).of(value) == fingerprint({**head, field: value})


def test_field_fingerprints_of_a_batch_head() -> None:
    head = {"provider": "local", "kind": JobKind.PREDICTION, "version": "v" * 64, "deployment_version": "é"}
    spliced = FieldFingerprints(head, "input")
    for row in ({"prompt": "a", "seed": 1}, {}, {"z": [1.5, None, {"b": True, "a": "\u2028"}]}):
        assert spliced.of(row) == fingerprint({**head, "input": row})
    with pytest.raises(ValueError):
        spliced.of({"x": float("nan")})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _json_values, max_size=5))
def test_canonical_json_of_a_mapping_is_json_dumps_with_its_options(value: dict) -> None:
    """Mappings take the kept C encoder: the text is what json.dumps gives with the same options."""
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                               allow_nan=False)


def test_canonical_json_after_a_refused_value() -> None:
    """A failure (a cycle, NaN, a type JSON lacks) leaves nothing behind for the next value."""
    shared: dict = {"a": [1]}
    looped: dict = {"shared": shared}
    shared["back"] = looped
    for bad in (looped, {"x": float("nan")}, {"x": object()}):
        with pytest.raises((ValueError, TypeError)):
            canonical_json(bad)
    del shared["back"]
    assert canonical_json({"p": shared, "q": shared}) == '{"p":{"a":[1]},"q":{"a":[1]}}'
    assert canonical_json(looped) == '{"shared":{"a":[1]}}'
