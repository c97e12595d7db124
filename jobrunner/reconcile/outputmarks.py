"""Marks of the batch output files apply last wrote or checked, so a converged apply need not
re-check a big file row by row when it provably still holds what it should.

A converged apply checks each batch's output file against the rows it would write, so a file left
stale (rows removed by hand, a kill after the jobs finished and before the file was written) is
repaired. At 100,000 items that check makes, scrubs and encodes 100,000 rows: about 3 s.

A mark, taken when apply wrote a file or found it right row by row, holds two fingerprints:

- of the file: its size and the sha256 of its bytes (tens of milliseconds for 20 MB);
- of what it should hold (`RowsKey`): a digest of everything a row is made from, in manifest
  order (each item's address, input and sensitive keys, and its recorded status, output, metrics
  and error), of the secrets the rows are scrubbed of, and of jobrunner's version (the format).

When both match today's, the file holds byte for byte what was found right for the same rows,
so the row-by-row check is skipped. Any difference (the file edited, truncated or removed, a kill
before it was written, a state change, other secrets, another version) means today's check.

The marks live in `.jobrunner/output-files.json` at the workspace root. Losing or corrupting it
costs one check, never a wrong file. The secrets enter the mark only through PBKDF2 (200,000
rounds of HMAC-SHA256, salted), the way a password verifier is kept: the mark never holds a value
that leads back to a secret cheaply. (scrypt was tried: its 16 MB raised a converged apply's peak.)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobrunner import __version__
from jobrunner.resources import DesiredJob
from jobrunner.state.model import StateDoc

MARKS_PATH = ".jobrunner/output-files.json"
_MARKS_FORMAT = 1
# Bumped when a row's format changes within one version of jobrunner.
_ROWS_FORMAT = f"jobrunner {__version__} rows 1"
_SALT = b"jobrunner output-file mark"


class RowsKey:
    """The digest of what a batch's output file should hold, made lazily and at most once: the
    secrets' key derivation costs about 40 ms, paid only when a mark is compared or recorded."""

    def __init__(self, jobs: list[DesiredJob], doc: StateDoc, secrets: Any) -> None:
        self._jobs, self._doc, self._secrets = jobs, doc, secrets
        self._value: str | None = None

    @property
    def value(self) -> str:
        if self._value is None:
            self._value = _rows_digest(self._jobs, self._doc, _secrets_digest(self._secrets))
        return self._value


def _secrets_digest(secrets: Any) -> bytes:
    values = sorted(getattr(secrets, "values", ()) or ())
    if not values:
        return b""
    joined = "\0".join(values).encode("utf-8", "surrogatepass")
    return hashlib.pbkdf2_hmac("sha256", joined, _SALT, 200_000)


# The row is JSON, so its ingredients are digested as JSON (by the C encoder): the input in its own
# key order (the row keeps it), the recorded output and metrics with sorted keys (the row sorts
# them, and their order differs between the run that wrote the file and a reload of state).
_AS_WRITTEN = json.JSONEncoder(ensure_ascii=False, default=str)
_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)
_CHUNK = 4096


def _rows_digest(jobs: Iterable[DesiredJob], doc: StateDoc, secrets: bytes) -> str:
    """sha256 over each row's ingredients in manifest order, encoded as the row encodes them, so
    equal digests mean equal rows (and a difference that would not show in the row, such as a
    status that is a `JobStatus` in the run and a str once reloaded, does not count)."""
    h = hashlib.sha256(_ROWS_FORMAT.encode() + b"\0" + secrets + b"\0")
    addresses = doc.addresses
    chunk: list[DesiredJob] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) == _CHUNK:
            _digest_chunk(h, chunk, addresses)
            chunk = []
    _digest_chunk(h, chunk, addresses)
    return h.hexdigest()


def _digest_chunk(h: Any, jobs: list[DesiredJob], addresses: dict[str, Any]) -> None:
    """One encoder call per side for a few thousand items: the per-item cost is a tuple, not a call."""
    # peek_outputs: a loaded address's outputs are read here once, not kept unpacked (jobrunner.state.model).
    recorded = [None if (st := addresses.get(j.address)) is None
                else (st.status, (outs := st.peek_outputs()).get("output"), outs.get("metrics", {}), st.error)
                for j in jobs]
    written = [(j.address, j.request.get("input") or {}, j.sensitive_paths) for j in jobs]
    h.update(_AS_WRITTEN.encode(written).encode("utf-8", "surrogatepass"))
    h.update(_SORTED.encode(recorded).encode("utf-8", "surrogatepass"))


def _file_print(path: Path) -> tuple[int, str] | None:
    """(size, sha256 of the bytes) of the file, None when it cannot be read."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size, h.hexdigest()


class OutputMarks:
    """The marks of one workspace's output files, read once, written back when one changed."""

    def __init__(self, root: Path) -> None:
        self._path = root / MARKS_PATH
        self._marks = self._read()
        self._dirty = False

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _MARKS_FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return {k: v for k, v in data["files"].items() if isinstance(v, dict)}

    def holds(self, path: Path, key: RowsKey) -> bool:
        """Does the mark prove that the file at `path` still holds the rows `key` stands for?"""
        mark = self._marks.get(str(path))
        if mark is None:
            return False
        try:
            if os.stat(path).st_size != mark.get("size"):
                return False  # a truncated or grown file, without reading it
        except OSError:
            return False
        found = _file_print(path)
        return found is not None and [found[0], found[1], key.value] == [mark.get("size"), mark.get("sha256"),
                                                                          mark.get("rows")]

    def record(self, path: Path, key: RowsKey) -> None:
        """The file at `path` was just written or found to hold the rows `key` stands for."""
        found = _file_print(path)
        if found is None:
            self.forget(path)
            return
        self._marks[str(path)] = {"size": found[0], "sha256": found[1], "rows": key.value}
        self._dirty = True

    def forget(self, path: Path) -> None:
        if self._marks.pop(str(path), None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the marks atomically; a failure only means the next apply checks row by row."""
        if not self._dirty:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".output-files.", dir=self._path.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"format": _MARKS_FORMAT, "files": self._marks}, fh, sort_keys=True)
            os.replace(tmp, self._path)
            self._dirty = False
        except OSError:
            Path(tmp).unlink(missing_ok=True)
