"""Batch rows: inline, JSONL and CSV, keys, defaults and errors with line numbers."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.errors import ManifestError
from jobrunner.inputs import load_batch_items, read_batch_items, row_key
from jobrunner.resources import Position, Resource


def batch(spec: dict, file: str = "specs/b.yaml") -> Resource:
    positions = {f"$.spec.inputs[{i}]": Position(10 + i, 7) for i in range(len(spec.get("inputs") or []))}
    return Resource(kind="PredictionBatch", name="b", spec=spec, file=file, line=1, positions=positions)


def test_inline_rows_keys_and_defaults(tmp_path: Path) -> None:
    r = batch({"input_defaults": {"max_tokens": 80, "seed": 1},
               "inputs": [{"key": "moon", "prompt": "The moon"}, {"prompt": "At dawn", "seed": 2}]})
    items = read_batch_items(r, tmp_path)
    assert [i.key for i in items] == ["moon", row_key({"prompt": "At dawn", "seed": 2})]
    assert items[0].input == {"max_tokens": 80, "seed": 1, "prompt": "The moon"}
    assert items[1].input == {"max_tokens": 80, "seed": 2, "prompt": "At dawn"}
    assert [i.line for i in items] == [10, 11]


def test_hash_key_does_not_depend_on_defaults_or_order() -> None:
    assert row_key({"a": 1, "b": 2}) == row_key({"b": 2, "a": 1})
    assert len(row_key({"a": 1})) == 12


def test_jsonl_file_relative_to_manifest(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "rows.jsonl").write_text('{"key": "a", "prompt": "x"}\n\n{"prompt": "y"}\n')
    items = read_batch_items(batch({"inputs_file": "rows.jsonl"}), tmp_path)
    assert [(i.key, i.line, i.file) for i in items][0] == ("a", 1, "specs/rows.jsonl")
    assert items[1].line == 3


def test_csv_file_types_and_empty_cells(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "rows.csv").write_text('key,prompt,seed,temperature\na,"x, y",1,0.5\nb,z,,\n')
    items = read_batch_items(batch({"inputs_file": "rows.csv", "input_defaults": {"seed": 9}}), tmp_path)
    assert items[0].input == {"seed": 1, "prompt": "x, y", "temperature": 0.5}
    assert items[1].input == {"seed": 9, "prompt": "z"}
    assert [i.line for i in items] == [2, 3]


def test_errors_carry_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "rows.jsonl").write_text('{"prompt": "a"}\n[1]\n{"prompt": "b", "key": "k"}\n{"key": "k"}\n')
    items, diags = load_batch_items(batch({"inputs_file": "rows.jsonl"}), tmp_path)
    assert len(items) == 2
    got = [(d.file, d.line, d.message) for d in diags]
    assert got[0][:2] == ("specs/rows.jsonl", 2) and "expected a JSON object" in got[0][2]
    assert got[1][:2] == ("specs/rows.jsonl", 4) and "duplicate batch item key 'k'" in got[1][2]
    with pytest.raises(ManifestError):
        read_batch_items(batch({"inputs_file": "rows.jsonl"}), tmp_path)


@pytest.mark.parametrize("name, content, words", [
    ("rows.txt", "x", "unknown format"),
    ("missing.jsonl", None, "not found"),
    ("empty.csv", "", "header row"),
    ("dup.csv", "a,a\n1,2\n", "every column once"),
])
def test_inputs_file_problems(tmp_path: Path, name: str, content: str | None, words: str) -> None:
    (tmp_path / "specs").mkdir()
    if content is not None:
        (tmp_path / "specs" / name).write_text(content)
    _, diags = load_batch_items(batch({"inputs_file": name}), tmp_path)
    assert diags and words in diags[0].message


def test_invalid_key(tmp_path: Path) -> None:
    _, diags = load_batch_items(batch({"inputs": [{"key": "a b]"}]}), tmp_path)
    assert "invalid key" in diags[0].message and diags[0].line == 10


def test_identical_rows_without_keys(tmp_path: Path) -> None:
    _, diags = load_batch_items(batch({"inputs": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}]}), tmp_path)
    (d,) = diags
    assert d.line == 12 and "duplicate row: identical to the row at line 10" in d.message
