"""A decoded copy of a big snapshot beside it, so the next load need not decode its JSON again.

Loading a snapshot of 100,000 addresses is about a gigabyte of JSON decoding and 100,000 address
states built field by field: over a second, the largest part of a `plan`, `status` or no-change
`apply` over a big batch. Once a load has decoded a snapshot of at least `MIN_ADDRESSES`
addresses, it writes what it built to `<state file>.decoded`: each address's field values as
`marshal` packs them (the packed `outputs` and `inputs` bytes included, so they stay equal bytes:
`reconcile.outputmarks` relies on that), a thousand addresses a record. The next load reads that
instead, in about a third of the time, when it is provably the same snapshot:

- the header names this jobrunner's version and this format, and the snapshot's size and crc32
  (the digest journal records name it by), which the load checks against the snapshot's bytes
  (reading them, not decoding them: tens of milliseconds);
- the records' own crc32 is checked once they are read; anything that does not read back as
  written (a torn or edited file, another version) means the JSON is decoded as before.

The snapshot stays the only truth: the copy is never written from anything but a snapshot just
decoded, nothing else reads it, and deleting it costs one slower load. The journal is replayed on
top of either, as before.
"""
from __future__ import annotations

import contextlib
import json
import marshal
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO

from jobrunner import __version__
from jobrunner.state.model import (
    STORED_FIELDS,
    AddressState,
    Attempt,
    Intent,
    attempt_values,
    intent_values,
    stored_values,
)

CACHE_SUFFIX = ".decoded"
MIN_ADDRESSES = 5_000
_FORMAT = f"jobrunner {__version__} decoded snapshot 1"
_PER_RECORD = 1_000
_HEAD_BYTES = 1024
_RECORD = struct.Struct("<II")  # a record's length and crc32, before it
# The fields as this jobrunner declares them: a copy built with other fields is not read.
_FIELDS = [list(STORED_FIELDS), [f.name for f in fields(Attempt)], [f.name for f in fields(Intent)]]
_HISTORY = STORED_FIELDS.index("history")
_INTENT = STORED_FIELDS.index("intent")


def cache_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + CACHE_SUFFIX)


def _snapshot_print(fh: BinaryIO) -> tuple[int, int]:
    """(crc32, size) of the snapshot's bytes, read from the start (the caller rewinds)."""
    crc, size = 0, 0
    while chunk := fh.read(1 << 20):
        crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return crc, size


def read_cached(state_path: Path, fh: BinaryIO, size: int) -> tuple[dict[str, AddressState], int] | None:
    """The addresses of the snapshot open in `fh` (`size` bytes) and its crc32, from its decoded
    copy when that is provably of these bytes; None otherwise (`fh` is then back at its start)."""
    try:
        with open(cache_path(state_path), "rb") as cache:
            head = json.loads(cache.readline())
            if (not isinstance(head, dict) or head.get("format") != _FORMAT or head.get("size") != size
                    or head.get("fields") != _FIELDS or not isinstance(head.get("crc"), int)
                    or not isinstance(head.get("records"), int)):
                return None
            crc, seen = _snapshot_print(fh)
            if (crc, seen) != (head["crc"], size):
                return None
            addresses = _addresses(_records(cache, head["records"], head.get("records_crc")))
            return addresses, crc
    except (OSError, ValueError, EOFError, TypeError, KeyError, IndexError, struct.error):
        return None
    finally:
        fh.seek(0)


def _records(cache: BinaryIO, count: int, expected_crc: Any) -> Iterator[list[Any]]:
    """The records, each unmarshalled only once its own crc32 matched; then a ValueError if the
    crc32 of them all is not the header's or anything follows them (nothing built is kept)."""
    crc = 0
    for _ in range(count):
        prefix = cache.read(_RECORD.size)
        length, own = _RECORD.unpack(prefix)
        body = cache.read(length)
        if len(body) != length or zlib.crc32(body) != own:
            raise ValueError("torn or damaged record")
        crc = zlib.crc32(prefix + body, crc)
        yield marshal.loads(body)
    if crc != expected_crc or cache.read(1):
        raise ValueError("records do not read back as written")


def _addresses(records: Iterator[list[Any]]) -> dict[str, AddressState]:
    out: dict[str, AddressState] = {}
    for record in records:
        for values in record:
            values[_HISTORY] = [Attempt(*a) for a in values[_HISTORY]]
            intent = values[_INTENT]
            values[_INTENT] = Intent(*intent) if intent is not None else None
            st = AddressState(*values)
            out[st.address] = st
    return out


def write_cached(state_path: Path, addresses: dict[str, AddressState], crc: int, size: int) -> None:
    """Write the decoded copy of a snapshot of `size` bytes and `crc` whose addresses a load just
    built (before any journal record is replayed on them). Never fails the load: on any error the
    copy is not written (and a stale one is removed)."""
    target = cache_path(state_path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"\n" * _HEAD_BYTES)  # room for the header, written last
            records_crc, records = 0, 0
            states = list(addresses.values())
            for i in range(0, len(states), _PER_RECORD):
                body = marshal.dumps([_values(st) for st in states[i:i + _PER_RECORD]])
                raw = _RECORD.pack(len(body), zlib.crc32(body)) + body
                records_crc, records = zlib.crc32(raw, records_crc), records + 1
                out.write(raw)
            head = json.dumps({"format": _FORMAT, "size": size, "crc": crc, "records": records,
                               "records_crc": records_crc, "fields": _FIELDS}).encode()
            if len(head) >= _HEAD_BYTES:
                raise ValueError("header too long")
            out.seek(0)
            out.write(head.ljust(_HEAD_BYTES - 1) + b"\n")
        os.replace(tmp, target)
    except (OSError, ValueError, TypeError):
        Path(tmp).unlink(missing_ok=True)
        _unlink_quietly(target)


def _values(st: AddressState) -> list[Any]:
    values = list(stored_values(st))
    values[_HISTORY] = [attempt_values(a) for a in st.history]
    intent = st.intent
    values[_INTENT] = intent_values(intent) if intent is not None else None
    return values


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


__all__ = ["CACHE_SUFFIX", "MIN_ADDRESSES", "cache_path", "read_cached", "write_cached"]
