"""The items of a PredictionBatch: inline `inputs` or an `inputs_file` (JSONL or CSV).

Each item becomes one prediction with address `PredictionBatch/name[key]`. The key is the row's
`key` field (removed from the input), or else a short sha256 of the canonical row, so that adding
or reordering rows never changes the identity of the others. `input_defaults` are merged under
every row (the row wins). CSV cells that are plain integers or decimals become numbers and empty
cells are left out (so defaults apply); use JSONL when exact types matter.

`{$file: path}` values and `inputs_file` are relative to the manifest's directory.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from jobrunner.errors import Diagnostic, ManifestError
from jobrunner.fingerprint import FILE_MARKER, canonical_json, is_file_marker
from jobrunner.resources import Resource

MAX_INPUTS_FILE_BYTES = 256 * 1024 * 1024
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}\Z")
_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][-+]?[0-9]+)?\Z")


def plain_row(value: Any) -> bool:
    """A mapping of plain values (no mapping or list in it) without a `$file` key: nothing in it
    is a file reference, so it needs no walk for one. Most batch rows; checked in one loop, as it
    runs for each row of a big batch (validation and expansion both ask)."""
    if type(value) is not dict or FILE_MARKER in value:
        return False
    for v in value.values():  # a loop, not any(): no generator per row
        if isinstance(v, (dict, list)):
            break
    else:
        return True
    return False


class BatchItem(NamedTuple):
    """One row of a batch. A named tuple, not a frozen dataclass: as small, as immutable, and
    built four times faster (a big batch makes one per row)."""

    key: str
    input: dict[str, Any]
    line: int  # line of the row: in the manifest (inline) or in the inputs file
    file: str = ""  # workspace-relative file the row came from
    json_path: str = ""  # inline rows: `$.spec.inputs[i]`; rows of an inputs file: `$.spec.inputs_file`


def row_key(row: dict[str, Any]) -> str:
    """The default key of a row: the first 12 hex digits of the sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()[:12]


def manifest_dir(resource: Resource, root: Path) -> Path:
    return (root / resource.file).parent


def resolve_relative(resource: Resource, root: Path, rel: str) -> Path:
    """Absolute path of a path written in a manifest (relative to the manifest's directory)."""
    p = Path(rel)
    return p if p.is_absolute() else manifest_dir(resource, root) / p


# The manifest's file marker, under the name validation and batch reading know it by.
is_file_ref = is_file_marker


def _relpath(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _csv_cell(text: str) -> Any:
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    return text


def load_batch_items(resource: Resource, root: Path) -> tuple[list[BatchItem], list[Diagnostic]]:
    """The batch's items plus every problem found (never raises for bad content)."""
    spec = resource.spec
    diags: list[Diagnostic] = []
    addr = resource.address

    def diag(file: str, line: int, col: int, msg: str, path: str) -> None:
        diags.append(Diagnostic("error", file, line, col, msg, addr, path))

    rows: list[tuple[Any, int, str, str]] = []  # (row, line, file, json_path)
    # Rows decoded here from the inputs file belong to this function and are used as they are;
    # inline rows are the manifest's own values, copied before `key` is taken out.
    owned = "inputs_file" in spec and spec["inputs_file"] is not None
    if owned:
        file_rows = _inputs_file_rows(resource, root, diag)
        if file_rows is None:
            return [], diags
        rows = file_rows
    else:
        inline = spec.get("inputs")
        if isinstance(inline, list):
            for i, row in enumerate(inline):
                p = f"$.spec.inputs[{i}]"
                rows.append((row, resource.position(p).line, resource.file, p))

    defaults = spec.get("input_defaults") or {}
    if not isinstance(defaults, dict):
        defaults = {}
    items: list[BatchItem] = []
    first: dict[str, tuple[str, int]] = {}
    for row, line, file, jpath in rows:
        col = resource.position(jpath).column if file == resource.file else 1
        if not isinstance(row, dict):
            diag(file, line, col, f"each batch row must be an object (mapping), got {_type_name(row)}", jpath)
            continue
        if not owned:
            row = dict(row)
        explicit = "key" in row
        if explicit:
            raw_key = row.pop("key")
            if isinstance(raw_key, bool) or not isinstance(raw_key, (str, int)):
                diag(file, line, col, f"`key` must be a string, got {_type_name(raw_key)}", jpath)
                continue
            key = str(raw_key)
            if not KEY_RE.match(key):
                diag(
                    file,
                    line,
                    col,
                    f"invalid key {key!r}: use 1-128 letters, digits and . _ : @ + - (starting with a letter or digit)",
                    jpath,
                )
                continue
        else:
            key = row_key(row)
        if key in first:
            ffile, fline = first[key]
            where = f"line {fline}" if ffile == file else f"{ffile}:{fline}"
            if explicit:
                diag(file, line, col, f"duplicate batch item key {key!r} (first at {where})", jpath)
            else:
                diag(file, line, col, f"duplicate row: identical to the row at {where} (it would be the same "
                                      f"item {key!r}); remove it, or give both rows distinct `key`s", jpath)
            continue
        first[key] = (file, line)
        items.append(BatchItem(key, {**defaults, **row} if defaults else row, line, file, jpath))
    return items, diags


def _inputs_file_rows(resource: Resource, root: Path, diag: Any) -> list[tuple[Any, int, str, str]] | None:
    """The rows of the batch's `inputs_file` (decoded here: the caller's to keep); None when the
    file itself cannot be used (reported through `diag`)."""
    rel = resource.spec["inputs_file"]
    pos = resource.position("$.spec.inputs_file")
    if not isinstance(rel, str):
        diag(resource.file, pos.line, pos.column, "inputs_file must be a path", "$.spec.inputs_file")
        return None
    path = resolve_relative(resource, root, rel)
    shown = _relpath(path, root)
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        diag(resource.file, pos.line, pos.column,
             f"inputs_file {rel!r}: unknown format; use a .jsonl (one JSON object per line) or .csv file",
             "$.spec.inputs_file")
        return None
    try:
        if path.stat().st_size > MAX_INPUTS_FILE_BYTES:
            diag(resource.file, pos.line, pos.column,
                 f"inputs_file {rel!r} is larger than {MAX_INPUTS_FILE_BYTES} bytes; split the batch",
                 "$.spec.inputs_file")
            return None
        raw = path.read_bytes()
    except FileNotFoundError:
        diag(resource.file, pos.line, pos.column,
             f"inputs_file {rel!r} not found (looked for {shown}; paths are relative to the manifest)",
             "$.spec.inputs_file")
        return None
    except OSError as exc:
        diag(resource.file, pos.line, pos.column, f"inputs_file {rel!r} cannot be read: {exc.strerror}",
             "$.spec.inputs_file")
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        diag(shown, line, 1, f"inputs_file is not valid UTF-8 (line {line})", "$.spec.inputs_file")
        return None
    return _read_csv(text, shown, diag) if suffix == ".csv" else _read_jsonl(text, shown, diag)


def _read_jsonl(text: str, shown: str, diag: Any) -> list[tuple[Any, int, str, str]]:
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    # Stripped of JSON's own whitespace only: what json.loads of the line would skip.
    flat = _flat_rows_at_once([line.strip(" \t\r\n") for _, line in numbered])
    if flat is not None:
        return [(row, n, shown, "$.spec.inputs_file") for row, (n, _) in zip(flat, numbered, strict=True)]
    rows = []
    for n, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            diag(shown, n, exc.colno, f"inputs_file line {n}: invalid JSON: {exc.msg}", "$.spec.inputs_file")
            continue
        if not isinstance(row, dict):
            diag(shown, n, 1, f"inputs_file line {n}: expected a JSON object, got {_type_name(row)}",
                 "$.spec.inputs_file")
            continue
        rows.append((row, n, shown, "$.spec.inputs_file"))
    return rows


def _flat_rows_at_once(lines: list[str]) -> list[dict[str, Any]] | None:
    """The rows of an inputs file whose every line is one flat object, decoded by one `json.loads`
    (a quarter of the time of one per line, and the keys every row repeats are one string each);
    None for anything else, which is then read line by line, with a message per bad line.

    Sound because each line holds exactly one `{` (its first character) and one `}` (its last)
    and no `[` or `]`: no value can span lines or share one, so the array holds one object per
    line exactly when each line is a valid object on its own.
    """
    if not lines or any(not line or line[0] != "{" or line[-1] != "}" for line in lines):
        return None
    joined = ",".join(lines)
    if joined.count("{") != len(lines) or joined.count("}") != len(lines) or "[" in joined or "]" in joined:
        return None
    try:
        rows = json.loads("[" + joined + "]")
    except ValueError:
        return None
    return rows if len(rows) == len(lines) else None


def _read_csv(text: str, shown: str, diag: Any) -> list[tuple[Any, int, str, str]]:
    rows: list[tuple[Any, int, str, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        diag(shown, 1, 1, "inputs_file is empty: a CSV needs a header row naming the input fields",
             "$.spec.inputs_file")
        return rows
    except csv.Error as exc:
        diag(shown, 1, 1, f"inputs_file: invalid CSV header: {exc}", "$.spec.inputs_file")
        return rows
    header = [h.strip() for h in header]
    if not all(header) or len(set(header)) != len(header):
        diag(shown, 1, 1, "inputs_file: the CSV header must name every column once (no empty or repeated names)",
             "$.spec.inputs_file")
        return rows
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            diag(shown, reader.line_num, 1, f"inputs_file row at line {reader.line_num}: invalid CSV: {exc}",
                 "$.spec.inputs_file")
            break
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            diag(shown, line, 1,
                 f"inputs_file row at line {line}: {len(cells)} cells but the header has {len(header)} columns",
                 "$.spec.inputs_file")
            continue
        row = {h: _csv_cell(c) for h, c in zip(header, cells, strict=False) if c != ""}
        rows.append((row, line, shown, "$.spec.inputs_file"))
    return rows


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def read_batch_items(resource: Resource, root: Path) -> list[BatchItem]:
    """The batch's items; raises ManifestError when the rows or the inputs file are invalid."""
    items, diags = load_batch_items(resource, root)
    if any(d.severity == "error" for d in diags):
        raise ManifestError(diags)
    return items


__all__ = [
    "BatchItem",
    "read_batch_items",
    "load_batch_items",
    "row_key",
    "canonical_json",
    "is_file_ref",
    "resolve_relative",
    "manifest_dir",
]
