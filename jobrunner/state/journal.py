"""The state journal: the addresses a save changed, appended beside the snapshot (`state.json`).

Apply saves after every intent, create and status change. Rewriting the whole document each time
made a batch of N items cost O(N) per save and O(N²) in all; the journal makes a save cost what it
changed. `state.json` stays the snapshot (same format, readable with grep and `state show`); the
journal `state.json.journal` holds, one line each, the records written since that snapshot:

    <crc32 of the JSON, 8 hex digits> <JSON>\\n

The first line is a header naming the snapshot the records extend (its lineage, serial and the
crc32 of its bytes); every later line is a record: the serial it brings the document to, the
document's head fields, the addresses it sets (whole `AddressState` JSON) and those it deletes.
A record is acknowledged (the save returns) only once it is fsynced.

Reading (`scan`): a journal whose header does not name the snapshot beside it is stale (a crash
between writing a new snapshot and removing the old journal, or a snapshot restored from its
backup) and is ignored, since the snapshot already holds more or deliberately replaces it. A last
line that is incomplete (no newline: the write was cut short, so never acknowledged) is dropped.
A complete line whose checksum does not match, or an incomplete line followed by others, is
damage to an acknowledged record: `JournalDamaged` is raised, never a silent loss.

This module is pure: it encodes, decodes and validates bytes; `local_file` does the I/O.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

JOURNAL_SUFFIX = ".journal"
JOURNAL_FORMAT = 1


class JournalDamaged(ValueError):
    """An acknowledged journal record cannot be read back (`line` is 1-based)."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line
        self.why = why


# One kept encoder (`json.dumps` with options builds one per call).
_dumps = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def snapshot_digest(data: bytes) -> str:
    """What a journal header records of its snapshot: crc32 and length of the file's bytes."""
    return f"{zlib.crc32(data):08x}:{len(data)}"


def encode_line(payload: dict[str, Any]) -> bytes:
    text = _dumps(payload)
    body = text.encode("utf-8")
    return f"{zlib.crc32(body):08x} ".encode("ascii") + body + b"\n"


def header_line(lineage: str, serial: int, digest: str) -> bytes:
    return encode_line({"journal": JOURNAL_FORMAT, "lineage": lineage, "serial": serial, "snapshot": digest})


def record_line(serial: int, head: dict[str, Any], set_json: dict[str, str], deleted: list[str]) -> bytes:
    """One record. `set_json` maps address -> its state already serialized as compact JSON (so
    the caller serializes each changed address once, on the thread that owns the document)."""
    # Built by hand around the pre-serialized address states, to avoid parsing them again.
    parts = [f"{json.dumps(a, ensure_ascii=False)}:{v}" for a, v in sorted(set_json.items())]
    text = (
        '{"del":' + _dumps(sorted(deleted)) + ',"head":' + _dumps(head)
        + ',"serial":' + str(int(serial)) + ',"set":{' + ",".join(parts) + "}}"
    )
    body = text.encode("utf-8")
    return f"{zlib.crc32(body):08x} ".encode("ascii") + body + b"\n"


@dataclass
class Scan:
    """What reading a journal found."""

    stale: bool = False  # the header names another snapshot: ignore the records
    records: list[dict[str, Any]] = field(default_factory=list)
    good_length: int = 0  # bytes up to the end of the last whole record (appends go there)
    torn_tail: int = 0  # bytes of an incomplete last line, dropped


def _decode(line: bytes, number: int) -> dict[str, Any]:
    crc_text, sep, body = line.partition(b" ")
    try:
        crc = int(crc_text, 16) if len(crc_text) == 8 else -1
    except ValueError:
        crc = -1
    if not sep or crc < 0:
        raise JournalDamaged(number, "not a journal record (no checksum)")
    if zlib.crc32(body) != crc:
        raise JournalDamaged(number, "checksum mismatch")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JournalDamaged(number, f"checksum matches but the JSON is invalid ({exc})") from None
    if not isinstance(value, dict):
        raise JournalDamaged(number, "not a JSON object")
    return value


def scan(raw: bytes, *, lineage: str, serial: int, digest: str) -> Scan:
    """Read a journal's bytes against the snapshot it should extend (see the module docstring)."""
    result = Scan()
    if not raw:
        return result
    end = raw.rfind(b"\n") + 1  # everything after the last newline is an incomplete write
    # (a tail of NUL bytes is the same: the file grew but the data never reached the disk)
    result.torn_tail = len(raw) - end
    lines = raw[:end].split(b"\n")[:-1]
    if not lines:
        return result
    header = _decode(lines[0], 1)
    if header.get("journal") != JOURNAL_FORMAT:
        raise JournalDamaged(1, f"unknown journal format {header.get('journal')!r}")
    if header.get("snapshot") != digest or header.get("lineage") != lineage or header.get("serial") != serial:
        result.stale = True
        return result
    last = serial
    for number, line in enumerate(lines[1:], start=2):
        record = _decode(line, number)
        rec_serial = record.get("serial")
        if not isinstance(rec_serial, int) or rec_serial <= last:
            raise JournalDamaged(number, f"serial {rec_serial!r} does not follow {last}")
        if not isinstance(record.get("set"), dict) or not isinstance(record.get("del"), list):
            raise JournalDamaged(number, "record has no set/del")
        last = rec_serial
        result.records.append(record)
    result.good_length = end
    return result


__all__ = ["JOURNAL_SUFFIX", "JournalDamaged", "Scan", "encode_line", "header_line", "record_line", "scan",
           "snapshot_digest"]
