"""The one exception tree of jobrunner.

Every failure a user can cause or meet ends in a subclass of `JobrunnerError`. The CLI catches
`JobrunnerError` at the top, prints `str(err)` (plus `err.hint` when set) and exits with the code
`jobrunner.exitcodes.for_error` gives its type; nothing else should reach the user as a traceback.
Provider HTTP failures are translated into `ProviderError` subclasses in exactly one place
(`jobrunner.providers.http`), and retry decisions are made by type: `RetryableError` subclasses
may be retried, others never.
"""
from __future__ import annotations

from dataclasses import dataclass


class JobrunnerError(Exception):
    """Base of every error jobrunner reports to a user.

    `hint` says what to do about it; the CLI prints it on its own line after the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # keep str() free of the hint; the CLI prints it separately
        return self.message


# --- input: manifests, config, usage -------------------------------------------------------

@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a manifest, positioned at file:line:col."""

    severity: str  # "error" | "warning"
    file: str
    line: int
    column: int
    message: str
    address: str | None = None  # Kind/name when known
    json_path: str = "$"

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        addr = f" {self.address}:" if self.address else ""
        sev = "" if self.severity == "error" else " warning:"
        return f"{where}:{sev}{addr} {self.json_path}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.json_path, self.message)


class ManifestError(JobrunnerError):
    """Manifests are invalid; carries every diagnostic found, not only the first."""

    def __init__(self, diagnostics: list[Diagnostic], *, note: str | None = None) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        # `note`: what the errors mean for tracked jobs (planning names files state tracks jobs from).
        super().__init__(
            "\n".join([*(d.format() for d in errors), *([note] if note else [])]) or "invalid manifests",
            hint=f"{len(errors)} error{'' if len(errors) == 1 else 's'}; "
                 f"fix {'it' if len(errors) == 1 else 'them'} and run `jobrunner validate` again.",
        )


class ConfigError(JobrunnerError):
    """The workspace config (jobrunner.yaml) or the environment is wrong."""


class CredentialsError(ConfigError):
    """A provider needs a credential that the environment does not hold."""


class UsageError(JobrunnerError):
    """The command line asks for something impossible (bad flag combination, unknown address)."""


class PlanError(JobrunnerError):
    """A plan cannot be computed (e.g. a training destination that neither exists nor is declared)."""


class PolicyError(PlanError):
    """The plan is over the workspace's budget (`policy:` in jobrunner.yaml) and no flag allows it."""


class StalePlanError(JobrunnerError):
    """A saved plan no longer matches the world; `changes` lists address -> what moved."""


    def __init__(self, message: str, changes: dict[str, str] | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.changes = changes or {}


# --- state ---------------------------------------------------------------------------------

class StateError(JobrunnerError):
    """State is unreadable, corrupt or of an unknown format version."""


class RemoteIdClashError(StateError):
    """One remote job would be recorded under two addresses (state's one-id-one-address invariant)."""


class StateLockedError(StateError):
    """Another process holds the state lock."""



# --- providers ----------------------------------------------------------------------------

class ProviderError(JobrunnerError):
    """A provider answered with an error, or could not be reached.

    `provider` names it, `status` is the HTTP status (None for transport errors), `detail` is the
    provider's own explanation (Replicate's problem+json `detail`, Emissary's `error`).

    `ambiguous` is True when a non-idempotent request (a create) failed in a way that leaves its
    fate unknown (timeout or dropped connection after the request was sent, a 5xx on a create):
    the job may exist. The HTTP layer reads it to word the hint; the executor decides by type
    (`TransportError`, `ServerError`, an unreadable 2xx) to look the job up before creating again.
    """

    ambiguous: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        detail: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class RetryableError(ProviderError):
    """Transient: may be retried with backoff (for non-creating requests, or after a lookup)."""


class RateLimitedError(RetryableError):
    """429: wait `retry_after` seconds (or backoff) and try again."""


class ServerError(RetryableError):
    """5xx from the provider."""


class TransportError(RetryableError):
    """Connection refused, reset or dropped, or a timeout: the request's fate is unknown."""


class ProviderUnreachableError(ProviderError):
    """A provider answered nothing usable for longer than its `unreachable_after` while apply waited.

    Not retryable: apply stops waiting on that provider's jobs (they keep running remotely, and
    state still tracks them, so the next apply resumes waiting).
    """


class AuthError(ProviderError):
    """401/403: the credential is missing or wrong."""


class PaymentRequiredError(ProviderError):
    """402: the account cannot pay for this."""


class NotFoundError(ProviderError):
    """404: the thing named does not exist on the provider."""


class InvalidRequestError(ProviderError):
    """400/409/413/422: the provider rejected the request as invalid; never retried."""


class ProtocolError(ProviderError):
    """The provider answered with something we cannot understand (bad JSON, wrong content type)."""


class UnexpectedIdError(ProtocolError):
    """The provider answered about a different job than the one asked for (a GET whose id differs,
    a create answered with the id of a job state already records): never accepted."""


__all__ = [name for name in dir() if not name.startswith("_")]
