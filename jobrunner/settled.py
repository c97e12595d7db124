"""Settled batches: knowing, without reading a batch's rows, that every row is recorded succeeded
at the fingerprint expansion would give it today.

A re-plan of a batch of 100,000 rows that all succeeded (a `plan`, a no-change `apply`) used to
read, validate, expand and fingerprint each row only to find each one unchanged: most of its CPU.
So when an apply leaves a batch with every row recorded succeeded at its desired fingerprint, it
keeps a mark of that batch (`reconcile.settledmarks`, beside the state):

- `inputs`: a digest of everything the batch's rows are made from: this module's format and
  jobrunner's version, the manifest document as loaded (kind, name, file, whole spec) and the
  bytes of its inputs file;
- `keys`: the rows' keys, in manifest order;
- `rows`: a digest of each row's address and fingerprint, in that order (what expansion gave);
- `written`: the digest of the rows as the output file writes them (`reconcile.outputmarks`).

A later plan proves a batch settled (`prove`) when today's `inputs` digest equals the mark's (so
the rows, their order, the template and everything else their fingerprints depend on are the same
bytes), and state records, for every key, an address that succeeded, has no pending intent, has a
remote id, and whose fingerprints digest to the mark's `rows` (so each is the fingerprint
expansion would compute). Then the rows are neither read nor validated nor expanded: the batch's
jobs are made from state (`spec.SettledJob`), and a job's request and material are read from the
rows only if something asks for them (rendering a JSON plan, for one).

What keeps this safe: any difference means the full path, never a guess. A batch is not covered at
all (`inputs_digest` gives None) when a `$` appears in its document or rows (a reference, a
`{$file}` whose contents would have to be hashed, or an escape that could spell one) or when it
has a webhook (a secret to register). Planning also gives up on proofs for `--target`,
`--replace`, declared moves and a state restored from a backup (`reconcile.planning`).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from jobrunner import __version__
from jobrunner.fingerprint import canonical_json
from jobrunner.providers.base import SUCCEEDED
from jobrunner.resources import Resource

SETTLED_FORMAT = f"jobrunner {__version__} settled 1"
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_CHUNK = 4096


@dataclass(frozen=True)
class BatchMark:
    """What the mark of one settled batch keeps (see the module docstring)."""

    inputs: str
    keys: tuple[str, ...]
    rows: str
    written: str

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "keys": list(self.keys), "rows": self.rows, "written": self.written}

    @classmethod
    def from_json(cls, data: Any) -> BatchMark | None:
        """The mark, or None for anything not shaped as jobrunner writes it."""
        if not isinstance(data, dict):
            return None
        inputs, keys, rows, written = (data.get(k) for k in ("inputs", "keys", "rows", "written"))
        if not (isinstance(inputs, str) and isinstance(rows, str) and isinstance(written, str)
                and isinstance(keys, list) and all(type(k) is str for k in keys)):
            return None
        return cls(inputs, tuple(keys), rows, written)


@dataclass(frozen=True)
class SettledProof:
    """A batch proven settled: its rows' addresses and fingerprints (state's strings), in manifest order."""

    resource: str
    addresses: tuple[str, ...]
    fingerprints: tuple[str, ...]
    written: str  # the rows as the output file writes them (reconcile.outputmarks)


def inputs_digest(res: Resource, inputs: bytes | None) -> str | None:
    """The digest of what `res`'s rows are made from (`inputs`: its inputs file's bytes, None for
    inline rows); None when the batch is not one a mark may cover."""
    spec = res.spec
    if res.kind != "PredictionBatch" or spec.get("webhook") is not None:
        return None
    if (spec.get("inputs_file") is not None) != (inputs is not None):
        return None
    try:
        text = canonical_json({"kind": res.kind, "name": res.name, "file": res.file, "spec": spec})
    except (TypeError, ValueError):  # a value JSON cannot say (a YAML timestamp): not covered
        return None
    if "$" in text or (inputs is not None and _may_hold_dollar(inputs)):
        return None
    h = hashlib.sha256(f"{SETTLED_FORMAT}\0".encode() + text.encode("utf-8", "surrogatepass") + b"\0")
    if inputs is not None:
        h.update(b"inputs file\0" + inputs)
    return h.hexdigest()


def _may_hold_dollar(data: bytes) -> bool:
    """Whether rows decoded from `data` may hold a `$`: written as is or as the JSON escape
    `\\u0024` (a `$` followed by escapes that spell `file` holds a `$` as is)."""
    return b"$" in data or b"\\u0024" in data


def rows_digest(addresses: Sequence[str], fingerprints: Sequence[str | None]) -> str:
    """sha256 of each row's address and fingerprint, in order."""
    h = hashlib.sha256(b"rows\0")
    for i in range(0, len(addresses), _CHUNK):
        part = [addresses[i:i + _CHUNK], fingerprints[i:i + _CHUNK]]
        h.update(_ENCODER.encode(part).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


_STATUS = attrgetter("status")
_INTENT = attrgetter("intent")
_REMOTE_ID = attrgetter("remote_id")
_FINGERPRINT = attrgetter("fingerprint")
_ADDRESS = attrgetter("address")


def prove(res: Resource, digest: str | None, mark: BatchMark | None,
          recorded: Mapping[str, Any]) -> SettledProof | None:
    """The proof that `res` is settled (see the module docstring), or None: today's `digest` of its
    inputs, the batch's `mark`, state's addresses `recorded`. Every test runs over all rows with C
    getters (no Python frame per row)."""
    if digest is None or mark is None or mark.inputs != digest or not mark.keys:
        return None
    prefix = res.address + "["
    addresses = [f"{prefix}{key}]" for key in mark.keys]
    states = list(map(recorded.get, addresses))
    try:
        if set(map(_STATUS, states)) != {SUCCEEDED} or any(map(_INTENT, states)) or not all(map(_REMOTE_ID, states)):
            return None
    except AttributeError:  # an address state does not record (None)
        return None
    fingerprints = list(map(_FINGERPRINT, states))
    if not all(type(fp) is str for fp in fingerprints) or rows_digest(addresses, fingerprints) != mark.rows:
        return None
    # State's own strings (equal to these): the jobs share them, as expansion's `_shared` does.
    return SettledProof(res.address, tuple(map(_ADDRESS, states)), tuple(fingerprints), mark.written)


__all__ = ["SETTLED_FORMAT", "BatchMark", "SettledProof", "inputs_digest", "prove", "rows_digest"]
