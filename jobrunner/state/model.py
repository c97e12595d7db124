"""The state document: plain data, versioned, independent of where it is stored.

One `AddressState` per address (Training/x, PredictionBatch/x[key], Model/x). The history keeps
every remote id ever created for the address, so nothing is forgotten even when replaced; an
`intent` is written (and flushed) before every create so a crash between "create sent" and "id
recorded" can be resolved by looking the job up on the provider (exactly-once creation).

Invariant: one remote job belongs to one address. Every writer that records a remote id goes
through `StateDoc.claim_remote_id`, which refuses an id another address already holds
(`RemoteIdClashError`); `check_remote_ids` verifies a whole document (commands that plan or apply
run it on the state they load). Two addresses sharing a job means one of them adopted a job it did
not create while its own is untracked: never something to accept silently.
"""
from __future__ import annotations

import marshal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
from typing import Any

from jobrunner.errors import RemoteIdClashError
from jobrunner.resources import JOB_MODEL

STATE_FORMAT_VERSION = 1


# Attempt, Intent and AddressState have slots: a state holds one AddressState and one Attempt or
# more per address, and an instance without a `__dict__` is some 200 bytes smaller (20 MB of a
# 100,000-address state). Code that needs their fields as a dict uses `field_values`.


@dataclass(slots=True)
class Attempt:
    remote_id: str
    fingerprint: str
    attempt: int  # 1-based attempt number for this fingerprint
    created_at: str  # RFC 3339, when jobrunner recorded it
    status: str  # normalized status last observed
    project_id: str | None = None


@dataclass(slots=True)
class Intent:
    """Written before a create is sent; cleared once the remote id is recorded."""

    fingerprint: str
    attempt: int
    created_at: str  # RFC 3339, before the request was sent
    request_digest: str  # sha256 of the canonical create body, to match remote jobs after a crash
    # What the create asks for (redacted fingerprint material): lets a later run find the job a lost
    # create made even when no manifest defines the address any more.
    inputs: dict[str, Any] | None = None


@dataclass(slots=True)
class AddressState:
    address: str
    kind: str  # Training | PredictionBatch | Model
    job_kind: str  # training | prediction | model
    provider: str
    file: str  # manifest file (workspace-relative) that defined it
    fingerprint: str | None = None
    remote_id: str | None = None
    project_id: str | None = None  # Emissary
    status: str | None = None  # normalized status last observed
    attempts: int = 0  # attempts for the current fingerprint
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    history: list[Attempt] = field(default_factory=list)
    intent: Intent | None = None
    updated_at: str | None = None
    inputs: dict[str, Any] | None = None  # redacted request input, for diffs in plans
    # The manifest's lifecycle block when last applied, so removing a manifest cannot remove its
    # protection (prevent_cancel, on_remove) at the same time.
    lifecycle: dict[str, Any] | None = None

    def attempt_of(self, remote_id: str | None) -> Attempt | None:
        """The latest recorded attempt that created `remote_id`, if any."""
        for attempt in reversed(self.history):
            if attempt.remote_id == remote_id:
                return attempt
        return None

    def peek_outputs(self) -> dict[str, Any]:
        """`outputs`, without keeping them unpacked (for a reader that looks at each address once)."""
        value = _get_outputs(self)
        return marshal.loads(value) if type(value) is bytes else value  # type: ignore[no-any-return]

    def peek_inputs(self) -> dict[str, Any] | None:
        """`inputs`, without keeping them unpacked."""
        value = _get_inputs(self)
        return marshal.loads(value) if type(value) is bytes else value  # type: ignore[no-any-return]

    def to_json(self, *, scrub: bool = True) -> dict[str, Any]:
        # Same result as dataclasses.asdict, an order of magnitude faster: asdict deep-copies every
        # value, which made saving 10,000 addresses take seconds. Nested plain data is shared, not
        # copied; serialize it, do not mutate it. `scrub=False` is for a writer that checks the
        # encoded text for secrets instead (`serialize.address_json`), then calls `scrub_secrets`.
        data = dict(zip(_ADDRESS_FIELDS, _unpacked_values(self), strict=True))
        data["history"] = [dict(zip(_ATTEMPT_FIELDS, _attempt_values(a), strict=True)) for a in self.history]
        intent = self.intent
        data["intent"] = dict(zip(_INTENT_FIELDS, _intent_values(intent), strict=True)) if intent is not None else None
        if scrub:
            scrub_secrets(data)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, share_keys: bool = True, pack: bool = False) -> AddressState:
        """`share_keys=False`: the caller decoded many addresses in one `json.loads`, whose keys
        are already one string each (the decoder shares them within a call). `pack=True` (a
        document being loaded): `outputs` and `inputs` stay packed until first read (`_pack`)."""
        if pack:
            loaded = _loaded(data)
            if loaded is not None:
                return loaded
        history, intent = data.get("history", []), data.get("intent")
        st = cls(**{**data, "history": [Attempt(**a) for a in history],
                    "intent": Intent(**intent) if intent else None})
        st._share_strings(share_keys)
        if pack:
            _put_outputs(st, _pack(_get_outputs(st)))
            _put_inputs(st, _pack(_get_inputs(st)))
        return st

    def _share_strings(self, share_keys: bool = True) -> None:
        """Make the values every address repeats one string each (a 100,000-address state read
        line by line holds 30% less: 288 -> 201 MB). Values are unchanged, only shared."""
        intern = sys.intern
        # kind, job_kind, provider, file, status
        if type(self.kind) is str:
            self.kind = intern(self.kind)
        if type(self.job_kind) is str:
            self.job_kind = intern(self.job_kind)
        if type(self.provider) is str:
            self.provider = intern(self.provider)
        if type(self.file) is str:
            self.file = intern(self.file)
        if type(self.status) is str:
            self.status = intern(self.status)
        if share_keys:
            if type(self.outputs) is dict:
                self.outputs = _interned_keys(self.outputs)
            if type(self.inputs) is dict:
                self.inputs = _interned_keys(self.inputs)
        _share_inputs(self.inputs)
        for attempt in self.history:
            if type(attempt.status) is str:
                attempt.status = intern(attempt.status)
            if self.fingerprint is not None and attempt.fingerprint == self.fingerprint:
                attempt.fingerprint = self.fingerprint
            if self.remote_id is not None and attempt.remote_id == self.remote_id:
                attempt.remote_id = self.remote_id


# -- loading many addresses ---------------------------------------------------------------------
#
# A loaded address keeps its `outputs` and `inputs` packed (marshalled bytes in the slot) until
# something reads them. As dicts they are more than half of a batch item's memory (about 1 KB of
# 1.9 KB), and most commands never read them: `plan` and `status` look at fingerprints and
# statuses, `outputs` reads each address once. marshal packs and unpacks exactly the JSON types
# (floats bit for bit, key order kept) at a fraction of json's cost, and these bytes never leave
# the process. A read through the attribute unpacks and keeps the dict, so in-place changes stick;
# `to_json`, `field_values` and the `peek_*` methods unpack without keeping. Plain `bytes` marks a
# packed value: no JSON value, hence no outputs or inputs, is ever bytes.

_SHARED_INPUTS = ("kind", "provider", "version", "model")
_LAZY_FIELDS = ("outputs", "inputs")


def _pack(value: Any) -> Any:
    return marshal.dumps(value) if type(value) is dict and value else value


def _unpack(packed: bytes) -> Any:
    """A packed value to be kept: shared as an unpacked load shares it."""
    value = _interned_keys(marshal.loads(packed))
    _share_inputs(value)
    return value


def _share_inputs(inputs: Any) -> None:
    if type(inputs) is dict:
        # The request's kind, provider and model version repeat in every item of a batch.
        for name in _SHARED_INPUTS:
            value = inputs.get(name)
            if type(value) is str:
                inputs[name] = sys.intern(value)


def _lazy_field(name: str) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
    """Put a property in front of AddressState's slot `name` that unpacks a packed value on first
    read; the slot stays reachable as `_<name>_slot`. Returns the slot's raw get and set."""
    slot = AddressState.__dict__[name]
    get, put = slot.__get__, slot.__set__

    def read(self: AddressState) -> Any:
        value = get(self)
        if type(value) is bytes:
            value = _unpack(value)
            put(self, value)
        return value

    setattr(AddressState, f"_{name}_slot", slot)
    setattr(AddressState, name, property(read, put, doc=f"The address's {name} (unpacked on first read)."))
    return get, put


_get_outputs, _put_outputs = _lazy_field("outputs")
_get_inputs, _put_inputs = _lazy_field("inputs")

_ADDRESS_FIELDS = tuple(f.name for f in fields(AddressState))
_ADDRESS_FIELD_COUNT = len(_ADDRESS_FIELDS)
_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_ATTEMPT_FIELD_COUNT = len(_ATTEMPT_FIELDS)
_INTENT_FIELDS = tuple(f.name for f in fields(Intent))
# The values as stored: `outputs` and `inputs` maybe packed (read through their slots).
_stored_values = attrgetter(*(f"_{n}_slot" if n in _LAZY_FIELDS else n for n in _ADDRESS_FIELDS))
_LAZY_INDEXES = tuple(_ADDRESS_FIELDS.index(n) for n in _LAZY_FIELDS)
_attempt_values = attrgetter(*_ATTEMPT_FIELDS)
_intent_values = attrgetter(*_INTENT_FIELDS)
_address_items = itemgetter(*_ADDRESS_FIELDS)
_attempt_items = itemgetter(*_ATTEMPT_FIELDS)


def _loaded(data: dict[str, Any]) -> AddressState | None:
    """`data` as an AddressState, packed and shared, when it has exactly the fields jobrunner
    writes with the value types it writes; None otherwise (`from_json`'s general path then builds
    it, or names what is wrong). One positional call instead of keyword arguments and checks:
    this runs once per address of every load (100,000 for a big batch's state)."""
    if len(data) != _ADDRESS_FIELD_COUNT:
        return None
    intern, dumps = sys.intern, marshal.dumps
    try:
        (address, kind, job_kind, provider, file, fingerprint, remote_id, project_id, status, attempts,
         outputs, error, history, intent, updated_at, inputs, lifecycle) = _address_items(data)
        if status is not None:
            status = intern(status)
        packed_outputs: Any = dumps(outputs) if type(outputs) is dict and outputs else outputs
        packed_inputs: Any = dumps(inputs) if type(inputs) is dict and inputs else inputs
        attempts_made = _loaded_history(history, fingerprint, remote_id, status)
        return AddressState(
            address, intern(kind), intern(job_kind), intern(provider), intern(file), fingerprint, remote_id,
            project_id, status, attempts, packed_outputs, error, attempts_made,
            Intent(**intent) if intent else None, updated_at, packed_inputs, lifecycle)
    except (KeyError, TypeError):  # another field, a value of another type: the general path
        return None


def _loaded_history(history: list[dict[str, Any]], fingerprint: Any, remote_id: Any, status: Any) -> list[Attempt]:
    """The attempts, sharing the strings they repeat from their address (raises TypeError or
    KeyError for anything `_loaded` leaves to the general path)."""
    out = []
    for a in history:
        if len(a) != _ATTEMPT_FIELD_COUNT:
            raise TypeError("not an attempt as jobrunner writes it")
        rid, fp, number, created_at, st, project_id = _attempt_items(a)
        out.append(Attempt(remote_id if rid == remote_id else rid, fingerprint if fp == fingerprint else fp,
                           number, created_at, status if st == status else sys.intern(st), project_id))
    return out


def _unpacked_values(st: AddressState) -> list[Any]:
    """Every field of `st` in declaration order, packed ones unpacked for this call only."""
    values = list(_stored_values(st))
    for i in _LAZY_INDEXES:
        if type(values[i]) is bytes:
            values[i] = marshal.loads(values[i])
    return values


# `outputs` as an address holds it now: the packed bytes of a loaded address not yet read (equal
# bytes are equal outputs, `marshal.loads` being a function), or the dict. The slot's own getter
# (C, no Python frame: called for each of 100,000 addresses).
stored_outputs: Callable[[AddressState], Any] = _get_outputs


# The fields in declaration order, and getters of their values as stored (packed `outputs` and
# `inputs` as they are), for the decoded copy of a snapshot (jobrunner.state.loadcache).
STORED_FIELDS: tuple[str, ...] = _ADDRESS_FIELDS
stored_values: Callable[[AddressState], tuple[Any, ...]] = _stored_values
attempt_values: Callable[[Attempt], tuple[Any, ...]] = _attempt_values
intent_values: Callable[[Intent], tuple[Any, ...]] = _intent_values


def field_values(st: AddressState) -> tuple[Any, ...]:
    """Every field of `st`, in declaration order (comparing two of these compares the states)."""
    return tuple(_unpacked_values(st))


def _interned_keys(value: dict[str, Any]) -> dict[str, Any]:
    """`value` with its keys (and those of nested dicts) interned: they repeat in every address."""
    return {sys.intern(k) if type(k) is str else k: _interned_keys(v) if type(v) is dict else v
            for k, v in value.items()}


def scrub_secrets(data: dict[str, Any]) -> None:
    """Every way out of an address's state (the state file, its backup, PostgreSQL, `state show`)
    passes here: the free-form fields lose every secret value the command knows (redact.SECRETS),
    so a model that echoes a sensitive input or an error that quotes one is never stored. Inputs
    keep their shape: a value that holds a secret becomes "(sensitive)" whole, which lookups of a
    lost create treat as matching anything."""
    from jobrunner.redact import known_secrets, scrub_data

    secrets = known_secrets()
    for name in ("outputs", "error"):
        if data.get(name):
            data[name] = scrub_data(data[name], secrets=secrets)
    if data.get("inputs"):
        data["inputs"] = scrub_data(data["inputs"], secrets=secrets, whole_values=True)
    intent = data.get("intent")
    if intent and intent.get("inputs"):
        intent["inputs"] = scrub_data(intent["inputs"], secrets=secrets, whole_values=True)


@dataclass
class StateDoc:
    format_version: int = STATE_FORMAT_VERSION
    serial: int = 0  # bumped on every write
    lineage: str = ""  # uuid fixed at creation; saved plans check it
    addresses: dict[str, AddressState] = field(default_factory=dict)
    # The `workspace.id` of the jobrunner.yaml whose commands write this state (see
    # jobrunner.state.identity): a state recording another id is refused, never acted on.
    workspace_id: str | None = None
    # Set (RFC 3339) when this state was restored from a backup (`jobrunner state restore-backup`):
    # jobs created after the backup was taken are not in it, so until an apply has looked every
    # address up on its provider, an address state does not track must be looked up before it is
    # created, never created blindly. Cleared by the first apply that completes after the restore.
    recovered_at: str | None = None
    # remote id -> address, built on first use by `claim_remote_id` (not part of the document).
    _owners: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "serial": self.serial,
            "lineage": self.lineage,
            "addresses": {k: v.to_json() for k, v in sorted(self.addresses.items())},
        }
        # Written only when set: documents without them read exactly as before, by any version
        # (older versions ignore keys they do not know).
        if self.workspace_id is not None:
            data["workspace_id"] = self.workspace_id
        if self.recovered_at is not None:
            data["recovered_at"] = self.recovered_at
        return data

    # -- one remote id, one address ----------------------------------------------------------------

    def _holds(self, address: str, remote_id: str) -> bool:
        st = self.addresses.get(address)
        return st is not None and (st.remote_id == remote_id or any(a.remote_id == remote_id for a in st.history))

    def owner_of(self, remote_id: str) -> str | None:
        """The address that records `remote_id` (current or in its history), if any."""
        if self._owners is None:
            self._owners = {}
            for address, st in self.addresses.items():
                if st.job_kind == JOB_MODEL:
                    continue
                for rid in ([st.remote_id] if st.remote_id else []) + [a.remote_id for a in st.history]:
                    self._owners.setdefault(rid, address)
        owner = self._owners.get(remote_id)
        if owner is not None and self._holds(owner, remote_id):
            return owner
        if owner is None:
            # Not indexed: no address records it, as every writer records ids through
            # `claim_remote_id`. (Scanning every address here made each create of a batch cost
            # O(N), a batch O(N²): the answer to a create is checked against this index.)
            return None
        # The entry is stale (a forgotten or moved address): look for real.
        for address, st in self.addresses.items():
            if st.job_kind != JOB_MODEL and self._holds(address, remote_id):
                self._owners[remote_id] = address
                return address
        self._owners.pop(remote_id, None)
        return None

    def claim_remote_id(self, address: str, remote_id: str) -> None:
        """Reserve `remote_id` for `address` before recording it there.

        Raises RemoteIdClashError when another address already records that remote job.
        """
        owner = self.owner_of(remote_id) if self._owners is None or remote_id in self._owners else None
        if owner is not None and owner != address:
            raise RemoteIdClashError(
                f"remote job {remote_id} is already recorded under {owner}; refusing to record it under "
                f"{address} as well (one remote job belongs to one address)",
                hint=f"nothing was recorded for {address}; run apply again: it looks its own job up on the provider",
            )
        if self._owners is not None:
            self._owners[remote_id] = address

    def remote_id_clashes(self) -> dict[str, list[str]]:
        """remote id -> the addresses recording it, for every id recorded under more than one."""
        seen: dict[str, list[str]] = {}
        for address, st in self.addresses.items():
            if st.job_kind == JOB_MODEL:
                continue
            rid = st.remote_id
            history = st.history
            if rid is not None and len(history) == 1 and history[0].remote_id == rid:
                seen.setdefault(str(rid), []).append(address)  # the common case: one job, recorded twice
                continue
            for other in {rid, *(a.remote_id for a in history)} - {None}:
                seen.setdefault(str(other), []).append(address)
        return {rid: sorted(owners) for rid, owners in seen.items() if len(owners) > 1}

    def check_remote_ids(self) -> None:
        """Raise RemoteIdClashError naming every remote job that two addresses record."""
        clashes = self.remote_id_clashes()
        if not clashes:
            return
        shown = [f"{rid}: {', '.join(owners)}" for rid, owners in sorted(clashes.items())]
        more = f"\n  ... and {len(shown) - 10} more" if len(shown) > 10 else ""
        raise RemoteIdClashError(
            f"state records {len(clashes)} remote job(s) under more than one address:\n  "
            + "\n  ".join(shown[:10]) + more,
            hint="one remote job belongs to one address: `jobrunner state rm ADDRESS` all but one of the addresses "
                 "named; the next apply creates their jobs again",
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StateDoc:
        workspace_id, recovered_at = data.get("workspace_id"), data.get("recovered_at")
        for key, value in (("workspace_id", workspace_id), ("recovered_at", recovered_at)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
        return cls(
            format_version=data["format_version"],
            serial=data.get("serial", 0),
            lineage=data.get("lineage", ""),
            addresses={k: AddressState.from_json(v) for k, v in data.get("addresses", {}).items()},
            workspace_id=workspace_id,
            recovered_at=recovered_at,
        )
