"""Canonical JSON and sha256 digests: the identity of a job's desired result.

A fingerprint is the sha256 of the canonical JSON of exactly what determines a job's result. Two
specs that mean the same thing must give the same bytes whatever their key order or YAML style, so
canonical JSON sorts keys, uses fixed separators and refuses NaN/Infinity (they have no JSON form).

The JSON text forms, one per purpose (each defined here, nowhere else):
- `canonical_json`: the identity form. Every digest jobrunner keeps or compares is over it:
  fingerprints, batch row keys (`inputs.row_key`), the create digest of a write-ahead intent
  (`reconcile.requests.request_digest`), the spec digest of a saved plan. Changing its options
  would change every recorded fingerprint and re-run every job, so it never changes.
- `interpolated_json`: the text of a non-string output spliced into a string by a reference
  (`"run ${Training.x.output.checkpoint}"`). ASCII-escaped, as it always was: the resolved string
  enters fingerprints, so its bytes must stay the same.
The state file's on-disk form (`jobrunner.state`) happens to use the same options as
`canonical_json` per address line; it is a storage format, free to change without touching any
fingerprint.
Local files named by `{$file: path}` enter a fingerprint by content (`{"$file_sha256": ...}`), so
moving a file never re-runs a job and editing it always does.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

FILE_MARKER = "$file"
FILE_DIGEST = "$file_sha256"

_CHUNK = 1 << 20

# (absolute path, size, mtime_ns, inode) -> sha256; files are hashed once per process even when
# thousands of batch items name the same file.
_digest_cache: dict[tuple[str, int, int, int], str] = {}


# One encoder for every call: `json.dumps` with options builds a new one each time (a fifth of
# the cost of fingerprinting a small batch row). `encode` keeps no state between calls.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8 kept as is, NaN refused."""
    if type(value) is not dict or _C_MAKE_ENCODER is None:
        return _CANONICAL.encode(value)
    # A mapping (every fingerprint, row key and digest): the C encoder `encode` would build, kept
    # per thread, without `encode`'s per-call setup (a third of a small row's encoding time).
    try:
        encoder = _PER_THREAD.encoder
    except AttributeError:
        encoder = _PER_THREAD.encoder = _c_encoder()
    try:
        return "".join(encoder(value, 0))
    except BaseException:
        _PER_THREAD.encoder = _c_encoder()  # its cycle marks may still hold this value's containers
        raise


_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_PER_THREAD = threading.local()


def _c_encoder() -> Any:
    """The C encoder exactly as `_CANONICAL.encode` makes it for each call (json.encoder.iterencode)."""
    enc = _CANONICAL
    return _C_MAKE_ENCODER(  # type: ignore[misc]
        {} if enc.check_circular else None, enc.default,
        json.encoder.encode_basestring_ascii if enc.ensure_ascii else json.encoder.encode_basestring,
        enc.indent, enc.key_separator, enc.item_separator, enc.sort_keys, enc.skipkeys, enc.allow_nan)


class FieldFingerprints:
    """`fingerprint({**head, field: value})` for many values of one field: a batch's rows share
    everything but their input. The text of `head`'s other fields is encoded once and the value's
    canonical JSON spliced between, where sorted keys put it, so the bytes hashed are exactly
    `canonical_json({**head, field: value})` and each row pays only for its own value.
    """

    def __init__(self, head: dict[str, Any], field: str) -> None:
        self._head, self._field = head, field
        self._ends: tuple[str, str] | None = None  # built at the first row: what fails, fails there

    def of(self, value: Any) -> str:
        """sha256 (hex) of the canonical JSON of `{**head, field: value}`."""
        ends = self._ends or self._cut()
        return sha256_text(ends[0] + canonical_json(value) + ends[1])

    def _cut(self) -> tuple[str, str]:
        """canonical_json of the whole mapping, cut where `field` goes (sorted keys, no whitespace)."""
        field = self._field
        rest = {k: v for k, v in self._head.items() if k != field}
        if not all(isinstance(k, str) for k in rest):
            raise TypeError("FieldFingerprints needs string keys")  # canonical_json sorts only those
        before = "".join(f"{canonical_json(k)}:{canonical_json(rest[k])}," for k in sorted(rest) if k < field)
        after = "".join(f",{canonical_json(k)}:{canonical_json(rest[k])}" for k in sorted(rest) if k > field)
        self._ends = ("{" + before + canonical_json(field) + ":", after + "}")
        return self._ends


def interpolated_json(value: Any) -> str:
    """A non-string value as text inside a string: sorted keys, no whitespace, ASCII escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of `value`."""
    return sha256_text(canonical_json(value))


def file_digest(path: Path) -> str:
    """sha256 (hex) of a file's bytes, cached by path, size, mtime and inode."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    cached = _digest_cache.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _digest_cache[key] = digest
    return digest


def is_file_marker(value: Any) -> bool:
    """True for `{$file: path}`, the manifest's way to name a local file: exactly that one key,
    with a string path. Validation reports anything else holding a `$file` key as an error."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(FILE_MARKER), str)


def short(digest: str | None, n: int = 12) -> str:
    """A digest shortened for humans; "(known after apply)" for None."""
    return digest[:n] if digest else "(known after apply)"


__all__ = [
    "FILE_MARKER",
    "FILE_DIGEST",
    "canonical_json",
    "FieldFingerprints",
    "interpolated_json",
    "sha256_text",
    "fingerprint",
    "file_digest",
    "is_file_marker",
    "short",
]
