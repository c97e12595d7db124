"""The state document: plain data, versioned, independent of where it is stored.

One `AddressState` per address (Training/x, PredictionBatch/x[key], Model/x). The history keeps
every remote id ever created for the address, so nothing is forgotten even when replaced; an
`intent` is written (and flushed) before every create so a crash between "create sent" and "id
recorded" can be resolved by looking the job up on the provider (exactly-once creation).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATE_FORMAT_VERSION = 1


@dataclass
class Attempt:
    remote_id: str
    fingerprint: str
    attempt: int  # 1-based attempt number for this fingerprint
    created_at: str  # RFC 3339, when jobrunner recorded it
    status: str  # normalized status last observed
    project_id: str | None = None


@dataclass
class Intent:
    """Written before a create is sent; cleared once the remote id is recorded."""

    fingerprint: str
    attempt: int
    created_at: str  # RFC 3339, before the request was sent
    request_digest: str  # sha256 of the canonical create body, to match remote jobs after a crash
    # What the create asks for (redacted fingerprint material): lets a later run find the job a lost
    # create made even when no manifest defines the address any more.
    inputs: dict[str, Any] | None = None


@dataclass
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

    def to_json(self) -> dict[str, Any]:
        # Same result as dataclasses.asdict, an order of magnitude faster: asdict deep-copies every
        # value, which made saving 10,000 addresses take seconds. Nested plain data is shared, not
        # copied; serialize it, do not mutate it.
        data = dict(self.__dict__)
        data["history"] = [dict(a.__dict__) for a in self.history]
        data["intent"] = dict(self.intent.__dict__) if self.intent is not None else None
        _scrub_secrets(data)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AddressState":
        data = dict(data)
        data["history"] = [Attempt(**a) for a in data.get("history", [])]
        intent = data.get("intent")
        data["intent"] = Intent(**intent) if intent else None
        return cls(**data)


def _scrub_secrets(data: dict[str, Any]) -> None:
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StateDoc":
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
