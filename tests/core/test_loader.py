"""The YAML loader: positions, duplicate keys, YAML 1.1 traps, bounded aliases, size and encoding."""
from __future__ import annotations

import time
from pathlib import Path

from jobrunner.loader import MAX_ALIAS_EXPANSION, load_file, load_text
from jobrunner.resources import Position


def test_positions_are_recorded_per_json_path() -> None:
    r = load_text("a: 1\nb:\n  c: [x, {d: 2}]\n  'odd key': 3\n", "f.yaml")
    assert not r.diagnostics
    doc = r.documents[0]
    assert doc.data == {"a": 1, "b": {"c": ["x", {"d": 2}], "odd key": 3}}
    assert doc.positions["$.a"] == Position(1, 1)
    assert doc.positions["$.b.c"] == Position(3, 3)
    assert doc.positions["$.b.c[1]"] == Position(3, 10)
    assert doc.positions["$.b.c[1].d"] == Position(3, 11)
    assert doc.positions["$.b['odd key']"] == Position(4, 3)
    # an unknown deeper path falls back to its nearest ancestor
    assert doc.position("$.b.c[1].d.e") == Position(3, 11)


def test_multi_document_and_empty_documents() -> None:
    r = load_text("---\na: 1\n---\n---\nb: 2\n...\n", "f.yaml")
    assert [d.data for d in r.documents] == [{"a": 1}, {"b": 2}]
    assert [d.line for d in r.documents] == [2, 5]


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    r = load_text("spec:\n  order: 3\n  seed: 1\n  order: 4\n", "f.yaml")
    (d,) = r.diagnostics
    assert (d.line, d.column, d.json_path) == (4, 3, "$.spec.order")
    assert "duplicate key `order`" in d.message and "line 2" in d.message


def test_yaml11_scalars_are_remembered_with_their_text() -> None:
    r = load_text("a: on\nb: 1.10\nc: 2024-01-01\nd: '1.10'\ne: 0x10\n", "f.yaml")
    doc = r.documents[0]
    assert doc.data == {"a": True, "b": 1.1, "c": "2024-01-01", "d": "1.10", "e": 16}
    assert doc.implicit["$.a"].text == "on"
    assert doc.implicit["$.b"].text == "1.10"
    assert doc.implicit["$.c"].text == "2024-01-01"  # kept as text: JSON has no dates
    assert "$.d" not in doc.implicit  # quoted: a string, no trap


def test_keys_are_strings_as_written() -> None:
    r = load_text("on: 1\n1.10: x\n", "f.yaml")
    assert r.documents[0].data == {"on": 1, "1.10": "x"}


def test_merge_keys_and_anchors() -> None:
    r = load_text("base: &b {max_tokens: 80, seed: 1}\nrow:\n  <<: *b\n  seed: 2\n", "f.yaml")
    assert r.documents[0].data["row"] == {"max_tokens": 80, "seed": 2}


def test_billion_laughs_fails_fast_with_a_clear_error() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    start = time.perf_counter()
    r = load_text("\n".join(lines) + "\n", "bomb.yaml")
    elapsed = time.perf_counter() - start
    assert not r.documents
    (d,) = r.diagnostics
    assert str(MAX_ALIAS_EXPANSION) in d.message and "billion-laughs" in d.message
    # A ceiling against expanding the bomb (10^9 strings, minutes and gigabytes), not a benchmark:
    # well under a second normally, and a busy machine stays far below it.
    assert elapsed < 30


def test_recursive_alias_is_an_error() -> None:
    r = load_text("a: &x [1, *x]\n", "f.yaml")
    assert any("recursive alias" in d.message for d in r.diagnostics)


def test_syntax_error_is_positioned_and_keeps_earlier_documents() -> None:
    r = load_text("a: 1\n---\nb: [1, 2\nc: 3\n", "f.yaml")
    assert [d.data for d in r.documents] == [{"a": 1}]
    (d,) = r.diagnostics
    assert d.line == 4 and "invalid YAML" in d.message


def test_custom_tags_are_refused() -> None:
    r = load_text("a: !!python/object:os.system x\nb: !vault abc\nc: !!set {x}\nd: !env [1]\n", "f.yaml")
    msgs = [d.message for d in r.diagnostics]
    assert len(msgs) == 4
    assert "!!python/object:os.system" in msgs[0] and "!vault" in msgs[1]
    assert "!!set" in msgs[2] and "!env" in msgs[3]
    assert r.documents[0].data == {"a": None, "b": None, "c": None, "d": None}


def test_non_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_bytes(b"apiVersion: jobrunner/v1\nkind: Model # caf\xe9\n")
    r = load_file(p, "m.yaml")
    (d,) = r.diagnostics
    assert (d.line, d.column) == (2, 18)
    assert "not valid UTF-8" in d.message and "0xe9" in d.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_bytes(b"\xef\xbb\xbfa: caf\xc3\xa9\n")
    assert load_file(p, "m.yaml").documents[0].data == {"a": "café"}


def test_size_cap(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("a: " + "x" * 2000 + "\n")
    r = load_file(p, "big.yaml", max_bytes=1000)
    (d,) = r.diagnostics
    assert "over the 1000-byte limit" in d.message and not r.documents


def test_unreadable_file(tmp_path: Path) -> None:
    r = load_file(tmp_path / "missing.yaml", "missing.yaml")
    assert "cannot read file" in r.diagnostics[0].message


def test_control_characters_are_positioned() -> None:
    (d,) = load_text("a: b\nc: \x07x\n", "f.yaml").diagnostics
    assert (d.line, d.column) == (2, 4) and "control character U+0007" in d.message


def test_pure_python_parser_gives_the_same_result(monkeypatch) -> None:
    """Without libyaml the loader falls back to PyYAML's Python parser with identical results."""
    import jobrunner.loader as loader

    texts = ["a: 1\nb: [x, {c: on}]\n---\nd: 2024-01-01\n", "a: 1\na: 2\n", "a: [1\n", "a: \x07\n"]
    fast = [loader.load_text(t, "f.yaml") for t in texts]
    monkeypatch.setattr(loader, "_Composer", loader._PyComposer)
    slow = [loader.load_text(t, "f.yaml") for t in texts]
    for f, s in zip(fast, slow, strict=True):
        assert [(d.data, d.positions, d.implicit) for d in f.documents] == \
               [(d.data, d.positions, d.implicit) for d in s.documents]
        assert [(d.line, d.column) for d in f.diagnostics] == [(d.line, d.column) for d in s.diagnostics]
