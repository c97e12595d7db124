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

The recorded side of that digest decodes and re-encodes 100,000 outputs (0.4 s). So a mark also
keeps a quick digest (`RowsKey.quick`) of the same ingredients as a loaded state holds them:
each address's outputs as their packed bytes (`state.model.stored_outputs`; equal bytes are equal
outputs), its status and error. Equal quick digests prove the same rows; a differing or missing
one (outputs read or changed in this run, bytes that pack differently) only means the full digest
is compared, and when that matches, the quick one is added to the mark for the next apply.

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
from operator import attrgetter
from pathlib import Path
from typing import Any

from jobrunner import __version__
from jobrunner.resources import DesiredJob
from jobrunner.state.model import StateDoc, stored_outputs

MARKS_PATH = ".jobrunner/output-files.json"
_MARKS_FORMAT = 1
# Bumped when a row's format changes within one version of jobrunner.
_ROWS_FORMAT = f"jobrunner {__version__} rows 2"
_SALT = b"jobrunner output-file mark"


class RowsKey:
    """The digests of what a batch's output file should hold, each made lazily and at most once:
    the secrets' key derivation costs about 40 ms, paid only when a mark is compared or recorded."""

    def __init__(self, jobs: list[DesiredJob], doc: StateDoc, secrets: Any) -> None:
        self._jobs, self._doc, self._secrets = jobs, doc, secrets
        self._prefix: bytes | None = None
        self._value: str | None = None
        self._quick: str | None | bool = False  # False: not made yet

    def _common(self) -> bytes:
        """What both digests start with: the format, the secrets' digest and the written side."""
        if self._prefix is None:
            self._prefix = (_ROWS_FORMAT.encode() + b"\0" + _secrets_digest(self._secrets) + b"\0"
                            + written_digest(self._jobs))
        return self._prefix

    @property
    def value(self) -> str:
        if self._value is None:
            h = hashlib.sha256(self._common())
            _recorded_digest(h, self._jobs, self._doc.addresses)
            self._value = h.hexdigest()
        return self._value

    @property
    def quick(self) -> str | None:
        """The quick digest, None when some address's outputs are not packed (read in this run)."""
        if self._quick is False:
            h = hashlib.sha256(b"quick\0" + self._common())
            self._quick = h.hexdigest() if _packed_digest(h, self._jobs, self._doc.addresses) else None
        return self._quick  # type: ignore[return-value]


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
# No `default`: a status or error that is not JSON makes the quick digest give up, not guess.
_PLAIN = json.JSONEncoder(ensure_ascii=False)
_CHUNK = 4096


def _chunks(jobs: list[DesiredJob]) -> Iterable[list[DesiredJob]]:
    """A few thousand items at a time: one encoder call each, never 100,000 rows' text at once."""
    return (jobs[i:i + _CHUNK] for i in range(0, len(jobs), _CHUNK))


def written_digest(jobs: list[DesiredJob]) -> bytes:
    """sha256 of each item's address, input (its own key order) and sensitive keys, in manifest order.

    The jobs of a batch proven settled (`spec.SettledJob`, all of them) give the digest their
    batch's mark kept, taken over the same rows by the apply that settled them: their inputs are
    not read for it (`jobrunner.settled`)."""
    kept = _settled_written(jobs)
    if kept is not None:
        return kept
    h = hashlib.sha256()
    for chunk in _chunks(jobs):
        written = [(j.address, j.request.get("input") or {}, j.sensitive_paths) for j in chunk]
        h.update(_AS_WRITTEN.encode(written).encode("utf-8", "surrogatepass"))
    return h.digest()


def _settled_written(jobs: list[DesiredJob]) -> bytes | None:
    from jobrunner.spec import SettledJob

    rows = getattr(jobs[0], "rows", None) if jobs and isinstance(jobs[0], SettledJob) else None
    if rows is None or len(jobs) != len(rows.proof.addresses):
        return None
    if any(getattr(j, "rows", None) is not rows for j in jobs):  # all of them, and only them
        return None
    try:
        return bytes.fromhex(rows.proof.written)
    except ValueError:  # not what jobrunner writes: the inputs are read after all
        return None


def _recorded_digest(h: Any, jobs: list[DesiredJob], addresses: dict[str, Any]) -> None:
    """Each item's recorded status, output, metrics and error, encoded as the row encodes them, so
    equal digests mean equal rows (and a difference that would not show in the row, such as a
    status that is a `JobStatus` in the run and a str once reloaded, does not count)."""
    for chunk in _chunks(jobs):
        # peek_outputs: a loaded address's outputs are read here once, not kept unpacked (jobrunner.state.model).
        recorded = [None if (st := addresses.get(j.address)) is None
                    else (st.status, (outs := st.peek_outputs()).get("output"), outs.get("metrics", {}), st.error)
                    for j in chunk]
        h.update(_SORTED.encode(recorded).encode("utf-8", "surrogatepass"))


def _packed_digest(h: Any, jobs: list[DesiredJob], addresses: dict[str, Any]) -> bool:
    """Digest each item's status, error and packed outputs into `h`; False when an address is
    missing or its outputs are not packed (read or changed in this run), or a status or error is
    not JSON: then only the full digest tells. The packed bytes go in whole, after the list of
    their lengths (so the concatenation reads back one way): equal bytes unpack to equal outputs.
    Built with map() over C getters: no Python frame per item."""
    for chunk in _chunks(jobs):
        states: list[Any] = list(map(addresses.get, map(_ADDRESS, chunk)))
        try:
            packed = list(map(stored_outputs, states))
        except TypeError:  # a missing address (None)
            return False
        if set(map(type, packed)) != {bytes}:
            return False  # also an empty outputs dict, never packed: rare enough for the full digest
        try:
            text = _PLAIN.encode([list(map(_STATUS_ERROR, states)), list(map(len, packed))])
        except (TypeError, ValueError):
            return False
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
        h.update(b"".join(packed))
    return True


_ADDRESS = attrgetter("address")
_STATUS_ERROR = attrgetter("status", "error")


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
        if found is None or [found[0], found[1]] != [mark.get("size"), mark.get("sha256")]:
            return False
        quick = key.quick
        if quick is not None and quick == mark.get("quick"):
            return True
        if key.value != mark.get("rows"):
            return False
        if quick is not None:  # the same rows: the next apply can tell so from the quick digest
            mark["quick"] = quick
            self._dirty = True
        return True

    def record(self, path: Path, key: RowsKey) -> None:
        """The file at `path` was just written or found to hold the rows `key` stands for."""
        found = _file_print(path)
        if found is None:
            self.forget(path)
            return
        mark: dict[str, Any] = {"size": found[0], "sha256": found[1], "rows": key.value}
        if key.quick is not None:
            mark["quick"] = key.quick
        self._marks[str(path)] = mark
        self._dirty = True

    def forget(self, path: Path) -> None:
        if self._marks.pop(str(path), None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the marks atomically; a failure only means the next apply checks row by row."""
        if self._dirty and write_marks_file(self._path, {"format": _MARKS_FORMAT, "files": self._marks}):
            self._dirty = False


def write_marks_file(path: Path, data: dict[str, Any]) -> bool:
    """Write a marks file (a cache beside the state) atomically; False when it could not be
    written, which only costs the next command the slower path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, sort_keys=True)
        os.replace(tmp, path)
        return True
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
