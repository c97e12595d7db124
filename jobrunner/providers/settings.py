"""What every wire client is built from: the provider's jobrunner.yaml settings, checked, and the
environment, plus the test seams (transport, sleep). See `providers.registry` for the settings.

A provider's `build_client(ctx)` (named by its adapter) reads its credential and endpoint through
`ClientContext` and gets an `HttpClient` with the common bounds, retries and rate limits already
applied, so each wire module only says what differs: variable names, auth header, default limits.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobrunner.errors import ConfigError, CredentialsError
from jobrunner.providers.adapter import Endpoint
from jobrunner.providers.http import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LOG_BYTES,
    DEFAULT_TIMEOUT,
    EndpointResolver,
    HttpClient,
    RetryPolicy,
    Sleep,
)
from jobrunner.providers.ratelimit import RateLimiter, RateLimits
from jobrunner.providers.sync_create import SyncCreatePolicy
from jobrunner.providers.wire import check_transport_choice

# The `providers.<name>.base_url` value that means "the workspace's local platform" (for providers
# whose wire it speaks: `Endpoint.local_platform`).
LOCAL_PLATFORM = "local"
SETTING_KEYS = frozenset({"base_url", "url", "rate_limits", "retries", "timeout", "sync_wait", "deadline",
                          "max_body_bytes", "max_log_bytes", "unreachable_after"})


def normalize_base_url(url: str, *, variable: str, example: str = "https://api.replicate.com") -> str:
    """Strip a trailing `/` and `/v1`: our paths carry `/v1` (like the official Python client)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable}: {url!r} is not an http(s) URL", hint=f"e.g. {example}")
    return url.removesuffix("/v1")


def provider_settings(config: Any, name: str, own_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`providers.<name>` of jobrunner.yaml (empty when absent); keys neither common nor in
    `own_keys` (the adapter's `settings_keys`) are a ConfigError."""
    providers = getattr(config, "providers", None) or {}
    raw = providers.get(name) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"jobrunner.yaml: providers.{name} must be a mapping")
    known = SETTING_KEYS | own_keys
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"jobrunner.yaml: unknown key(s) under providers.{name}: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    return dict(raw)


def _timeout(settings: Mapping[str, Any], name: str) -> httpx.Timeout:
    value = settings.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            f"jobrunner.yaml: providers.{name}.timeout must be a positive number of seconds, got {value!r}")
    return httpx.Timeout(float(value), connect=min(10.0, float(value)), pool=60.0)


def _positive(settings: Mapping[str, Any], name: str, key: str, default: float, *, integer: bool = False) -> Any:
    """A positive number setting of providers.<name>, or its default."""
    value = settings.get(key)
    if value is None:
        return default
    not_number = isinstance(value, bool) or not isinstance(value, (int, float))
    if not_number or value <= 0 or (integer and value != int(value)):
        kind = "a positive whole number of bytes" if integer else "a positive number of seconds"
        raise ConfigError(f"jobrunner.yaml: providers.{name}.{key} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def _bounds(settings: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The time and size bounds of a provider's requests (see docs/providers.md, "Deadlines")."""
    return {
        "deadline": _positive(settings, name, "deadline", DEFAULT_DEADLINE),
        "max_body_bytes": _positive(settings, name, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, integer=True),
        "max_log_bytes": _positive(settings, name, "max_log_bytes", DEFAULT_MAX_LOG_BYTES, integer=True),
        "unreachable_after": _positive(settings, name, "unreachable_after", 0) or None,
    }


@dataclass
class ClientContext:
    """One provider's settings and environment, for its `build_client`.

    `env` (os.environ in production), `transport` and `sleep` exist for tests and benchmarks: an
    ASGI transport reaches the local platform in-process; a fake sleep makes retries instant.
    """

    name: str
    root: Path
    settings: dict[str, Any]
    env: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None = None
    sleep: Sleep | None = None
    endpoint: Endpoint | None = None  # the adapter's, for hosted providers
    config: Any = None  # the whole workspace config, for settings another provider owns (providers.local)
    _checked: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Every setting is checked before any credential is read: a typo is reported first.
        check_transport_choice(self.env)
        self._checked = {"policy": RetryPolicy.from_config(self.settings.get("retries")),
                         "timeout": _timeout(self.settings, self.name),
                         **_bounds(self.settings, self.name)}

    @property
    def schema_cache_dir(self) -> Path:
        """Where version schemas fetched from this provider are cached (immutable once pinned)."""
        return Path(self.root) / ".jobrunner" / "cache" / "schemas" / self.name

    def sync_create(self) -> SyncCreatePolicy:
        return SyncCreatePolicy.from_config(self.settings.get("sync_wait"), self.name)

    def credential(self, variable: str, where: str) -> str:
        """The credential in `variable`; a CredentialsError naming it (never its value) when unset."""
        value = (self.env.get(variable) or "").strip()
        if not value:
            raise CredentialsError(
                f"{self.name}: no credential: {variable} is not set",
                hint=f"export {variable}=... ({where}); credentials are read from the environment only",
            )
        return value

    def targets_local_platform(self) -> bool:
        """True when `providers.<name>.base_url: local` sends this hosted provider to the
        workspace's local platform; the URL variable (e.g. EMISSARY_SERVER_URL) still wins when set."""
        if str(self.settings.get("base_url") or "").strip() != LOCAL_PLATFORM:
            return False
        ep = self.endpoint
        if ep is None or not ep.local_platform:
            raise ConfigError(
                f"jobrunner.yaml: providers.{self.name}.base_url: `{LOCAL_PLATFORM}` is not available for {self.name}",
                hint=f"write the URL of its API, or use `provider: {LOCAL_PLATFORM}` to run on the local platform",
            )
        return not self.env.get(ep.url_env)

    def base_url(self, variable: str, default: str, *, local_ok: bool = False) -> str:
        """The environment variable, else `providers.<name>.base_url`, else the public API; errors
        name whichever of the two settings it came from."""
        url = self.env.get(variable) or self.settings.get("base_url") or default
        where = variable if self.env.get(variable) else f"providers.{self.name}.base_url"
        example = f"{default}, or {LOCAL_PLATFORM} for the local platform" if local_ok else default
        return normalize_base_url(str(url), variable=where, example=example)

    def hosted_http(self) -> HttpClient:
        """The HttpClient of a hosted provider: its adapter's endpoint, credential and limits."""
        ep = self.endpoint
        if ep is None:
            raise ConfigError(f"{self.name}: the provider's adapter names no endpoint")
        if self.targets_local_platform():  # its build_client routes this case (providers.local.platform_http)
            raise ConfigError(
                f"{self.name}: the client does not handle providers.{self.name}.base_url: {LOCAL_PLATFORM}")
        # The URL first: a mistyped base_url (`locall`) is named as such, not as a missing credential.
        base = self.base_url(ep.url_env, ep.default_url, local_ok=ep.local_platform)
        try:
            token = self.credential(ep.credential_env, ep.credential_hint)
        except CredentialsError as exc:
            if ep.local_platform:  # the other way to run: say it where a new user first looks
                exc.hint = (f"{exc.hint}; or, to run on the local platform, set providers.{self.name}.base_url: "
                            f"{LOCAL_PLATFORM} in jobrunner.yaml")
            raise
        return self.http(base, token=token, auth_header=ep.auth_header,
                         auth_scheme=ep.auth_scheme, credential_var=ep.credential_env, default_limits=ep.rate_limits)

    def http(self, base_url: str | None, *, default_limits: Mapping[str, float | None], auth_header: str,
             auth_scheme: str | None, credential_var: str, token: str | None = None,
             resolve_endpoint: EndpointResolver | None = None) -> HttpClient:
        """The HttpClient with this provider's bounds, retries and rate limits."""
        limits = RateLimits.from_config(self.settings.get("rate_limits"), default_limits)
        sleep: dict[str, Any] = {"sleep": self.sleep} if self.sleep is not None else {}
        return HttpClient(self.name, base_url, token=token, resolve_endpoint=resolve_endpoint,
                          auth_header=auth_header, auth_scheme=auth_scheme, credential_var=credential_var,
                          limiter=RateLimiter(limits, **sleep), transport=self.transport, **self._checked, **sleep)


__all__ = ["LOCAL_PLATFORM", "SETTING_KEYS", "ClientContext", "normalize_base_url", "provider_settings"]
