"""An inputs file of flat rows is decoded in one go; anything else line by line. Both give the
same rows, lines and messages as decoding every line on its own."""
from __future__ import annotations

import json
from typing import Any

import pytest

from jobrunner.inputs import _flat_rows_at_once, _read_jsonl


def _line_by_line(text: str) -> tuple[list[tuple[Any, int]], list[tuple[int, int, str]]]:
    """What _read_jsonl gave before: each non-blank line decoded on its own."""
    rows, diags = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            diags.append((n, exc.colno, f"inputs_file line {n}: invalid JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict):
            diags.append((n, 1, "not an object"))
            continue
        rows.append((row, n))
    return rows, diags


def _read(text: str) -> tuple[list[tuple[Any, int]], list[tuple[int, int, str]]]:
    diags: list[tuple[int, int, str]] = []

    def diag(file: str, line: int, col: int, msg: str, path: str) -> None:
        diags.append((line, col, msg if "invalid JSON" in msg else "not an object"))

    return [(row, n) for row, n, _, _ in _read_jsonl(text, "in.jsonl", diag)], diags


CASES = [
    '{"a": 1}\n{"b": "x"}\n',
    '\n  {"a": 1}  \n\n\t{"b": 2.5, "c": null}\n',
    '{"a": "}{"}\n{"b": 1}\n',  # braces inside strings: read line by line
    '{"a": [1, 2]}\n{"b": {"c": 1}}\n',  # nested values
    '{"a": 1}, {"b": 2}\n{"c": 3}\n',  # two objects on a line: an error, as always
    '{"x": [{}\n{}]}\n{"p": 1}, {"q": 2}\n',  # lines that only parse together
    '{"a": 1}\n{"b": \n',  # a broken line
    '{"a": 1}\n[1, 2]\n"text"\n',  # not objects
    '\u00a0{"a": 1}\n',  # not JSON whitespace: an error, as always
    '{"a": 1, "a": 2}\n{"k": "\u00e9", "n": -0.0}\n',
    '',
]


@pytest.mark.parametrize("text", CASES)
def test_same_rows_and_messages_as_line_by_line(text: str) -> None:
    assert repr(_read(text)) == repr(_line_by_line(text))


def test_only_flat_rows_are_decoded_at_once() -> None:
    assert _flat_rows_at_once(['{"a": 1}', '{"b": 2}']) == [{"a": 1}, {"b": 2}]
    assert _flat_rows_at_once(['{"a": "}"}', '{"b": 2}']) is None
    assert _flat_rows_at_once(['{"a": [1]}']) is None
    assert _flat_rows_at_once(['{"a": 1}, {"b": 2}', '{"c": 3}']) is None
    assert _flat_rows_at_once([]) is None
    rows = _flat_rows_at_once(['{"prompt": "a"}', '{"prompt": "b"}'])
    assert rows is not None
    first, second = (next(iter(r)) for r in rows)
    assert first is second  # keys every row repeats are one string
