"""Sensitive `{$file}` inputs: which files are secrets, and what of them is scrubbed."""
from __future__ import annotations

from pathlib import Path

from jobrunner.redact import (
    REDACTED,
    SecretRegistry,
    file_secrets,
    hidden_files,
    scrub_text,
)


def test_only_files_under_secret_named_or_listed_keys_are_secret() -> None:
    value = {"service_key": {"$file": "k.pem"}, "data": {"$file": "d.txt"}, "notes": {"$file": "n.txt"},
             "nested": {"auth": [{"$file": "a.json"}]}}
    assert sorted(hidden_files(value)) == ["a.json", "k.pem"]
    assert sorted(hidden_files(value, ["notes"])) == ["a.json", "k.pem", "n.txt"]
    assert hidden_files({"data": {"$file": "d.txt"}}, ["input.data"]) == ["d.txt"]


def test_a_secret_file_is_scrubbed_whole_and_line_by_line_and_a_large_one_is_not_read(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("-----BEGIN KEY-----\nabcdefSECRETline1\nzyxwvuSECRETline2\n-----END KEY-----\n")
    big = tmp_path / "big.txt"
    big.write_text("x" * (64 * 1024 + 1))
    assert "abcdefSECRETline1" in file_secrets(key) and file_secrets(big) == []
    assert file_secrets(tmp_path / "missing") == []
    registry = SecretRegistry()
    registry.add_spec({"inputs": [{"key": "a", "ssh_key": {"$file": "k.pem"}, "corpus": {"$file": "big.txt"}}]},
                      tmp_path)
    text = "model said: zyxwvuSECRETline2 and abcdefSECRETline1"
    assert scrub_text(text, secrets=registry.snapshot()) == f"model said: {REDACTED} and {REDACTED}"
