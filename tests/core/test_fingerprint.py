"""Canonical JSON and digests: same meaning, same bytes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jobrunner.fingerprint import canonical_json, file_digest, fingerprint, is_file_marker, short


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
