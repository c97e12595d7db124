"""Serializing a state document again and again while only a few of its addresses change.

Apply saves state after every intent, create and final status, so a batch of N items saves the
whole document O(N) times. Serializing all N addresses each time made a 1,000-item apply spend
most of its CPU in `json.dumps`. `IncrementalSerializer` keeps, per address, the line it wrote
last time and a private copy of the `AddressState` it came from; an address whose state
still compares equal to that copy reuses its line, so a save costs one cheap dataclass comparison
per unchanged address and `json.dumps` only for the changed ones.

The private copy (not the live object, whose nested dicts and lists the reconciler mutates in
place) is what makes the comparison trustworthy. The text is byte for byte what a full
serialization gives: compact JSON, one address per line, sorted by address.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

from jobrunner.state.model import AddressState, StateDoc, field_values, scrub_secrets

# One kept encoder: `json.dumps` with options builds a new one per call (every address of every save).
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_dumps = _ENCODER.encode


def address_json(st: AddressState, secrets: Any = None) -> str:
    """`_dumps(st.to_json())`, encoded once. The secret scrub of `to_json` encodes each free-form
    field to look for known secret values in its text; here the address's own text is looked at
    instead, and only an address whose text may hold one (rare) is scrubbed and encoded again.
    `secrets`: `known_secrets()` as the caller just took it (a save encoding many addresses)."""
    from jobrunner.redact import SecretSet, known_secrets

    data = st.to_json(scrub=False)
    text = _dumps(data)
    if secrets is None:
        secrets = known_secrets()
    if not secrets:
        return text
    if not isinstance(secrets, SecretSet):  # a plain list (tests): the same check, slower
        secrets = SecretSet(secrets)
    if secrets.absent_from_json(text):
        return text
    scrub_secrets(data)
    return _dumps(data)


def address_line(address: str, st: AddressState) -> str:
    return json.dumps(address, ensure_ascii=False) + ":" + address_json(st)


def _line_and_copy(address: str, st: AddressState) -> tuple[AddressState, str]:
    """The address's line, and a private copy of its state rebuilt from that very JSON.

    Rebuilding from the JSON costs a fraction of `copy.deepcopy`. A value JSON cannot carry
    unchanged (a tuple, a non-string key) makes the copy differ from the live state, so that
    address is simply serialized again on every save: slower, never wrong.
    """
    value = address_json(st)
    return AddressState.from_json(json.loads(value)), json.dumps(address, ensure_ascii=False) + ":" + value


def join_document(doc: StateDoc, lines: list[str]) -> str:
    """The document's head (everything but the addresses), then the address lines."""
    data = dataclasses.replace(doc, addresses={}).to_json()
    data.pop("addresses", None)
    head = _dumps(data)
    if not lines:
        return head[:-1] + ',"addresses":{}}'
    return head[:-1] + ',"addresses":{\n' + ",\n".join(lines) + "\n}}"


def serialize(doc: StateDoc) -> str:
    """The whole document, every address serialized (no cache)."""
    return join_document(doc, [address_line(k, v) for k, v in sorted(doc.addresses.items())])


def serialize_chunks(doc: StateDoc) -> list[str]:
    """`serialize(doc)` as pieces whose concatenation is that text: one piece per address."""
    return list(iter_chunks(doc))


def iter_chunks(doc: StateDoc, text_of: Callable[[str, AddressState], str] | None = None) -> Iterator[str]:
    """The pieces of `serialize_chunks(doc)`, each made when it is asked for: a snapshot written
    from it holds one piece at a time, not the whole serialized document (about 100 MB at 100,000
    addresses). A value that is not JSON raises when its address is reached. `text_of(address,
    state)`: the address's `address_json` (e.g. one already encoded, `textcache`)."""
    addresses = sorted(doc.addresses)  # the keys only: no (key, state) pair per address besides
    if not addresses:
        yield join_document(doc, [])
        return
    head = join_document(doc, ["X"])
    yield head[: head.index("\nX\n")] + "\n"
    last = len(addresses) - 1
    states = doc.addresses
    for i, address in enumerate(addresses):
        if text_of is None:
            line = address_line(address, states[address])
        else:
            line = json.dumps(address, ensure_ascii=False) + ":" + text_of(address, states[address])
        yield line + (",\n" if i < last else "\n}}")


class IncrementalSerializer:
    """`serialize(doc)` with the lines of unchanged addresses reused from the previous call."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[AddressState, str]] = {}
        self.serialized = 0  # addresses dumped in the last call (for tests and benchmarks)

    def serialize(self, doc: StateDoc) -> str:
        cache = self._cache
        fresh: dict[str, tuple[AddressState, str]] = {}
        lines: list[str] = []
        dumped = 0
        for address in sorted(doc.addresses):
            st = doc.addresses[address]
            hit = cache.get(address)
            # Comparing the field tuples runs in C (dataclass `==` builds tuples in Python).
            if hit is None or field_values(hit[0]) != field_values(st):
                # Dump first: a value that is not JSON raises before the cache changes.
                hit = _line_and_copy(address, st)
                dumped += 1
            fresh[address] = hit
            lines.append(hit[1])
        text = join_document(doc, lines)
        self._cache = fresh
        self.serialized = dumped
        return text


__all__ = ["IncrementalSerializer", "address_json", "address_line", "iter_chunks", "join_document", "serialize",
           "serialize_chunks"]
