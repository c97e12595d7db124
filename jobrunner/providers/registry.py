"""Provider construction: credentials and endpoints from the environment, knobs from jobrunner.yaml.

`get_provider(name, config, root)` is how the rest of jobrunner obtains a provider. Credentials
come only from the environment, under the official clients' names: `REPLICATE_API_TOKEN` (+
`REPLICATE_BASE_URL`), `EMISSARY_CLIENT_API_KEY` (+ `EMISSARY_SERVER_URL`). The local platform needs
none (its token is read from the workspace). Per-provider settings in jobrunner.yaml, all optional:

    providers:
      replicate:
        base_url: https://api.replicate.com     # REPLICATE_BASE_URL wins when set
        rate_limits: {create_per_minute: 600, other_per_minute: 3000}
        retries: {max_attempts: 5, backoff_base: 0.5, backoff_max: 30, max_retry_after: 120}
        timeout: 30                             # seconds per attempt, the whole answer included (connect: 10)
        deadline: 120                           # seconds per request, all attempts and backoffs included
        max_body_bytes: 33554432                # larger answers are a protocol error (32 MiB)
        max_log_bytes: 1048576                  # `jobrunner logs` keeps the end of a log (1 MiB)
        unreachable_after: 300                  # apply stops waiting after this long without an answer
        sync_wait: 1                            # Prefer: wait=n on prediction creates (false: off)
      emissary: {base_url: https://api.withemissary.com}
      local: {url: http://127.0.0.1:8765}       # else the workspace's platform is auto-started

A missing credential is a CredentialsError naming the variable; the value itself never appears
in any message, repr or log.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import httpx

from jobrunner.errors import ConfigError, CredentialsError
from jobrunner.providers.emissary import EmissaryProvider
from jobrunner.providers.http import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LOG_BYTES,
    DEFAULT_TIMEOUT,
    HttpClient,
    RetryPolicy,
    Sleep,
)
from jobrunner.providers.local import LocalProvider, local_endpoint
from jobrunner.providers.ratelimit import REPLICATE_LIMITS, UNLIMITED, RateLimiter, RateLimits
from jobrunner.providers.replicate import ReplicateProvider
from jobrunner.providers.sync_create import SyncCreatePolicy

REPLICATE_TOKEN_ENV = "REPLICATE_API_TOKEN"
REPLICATE_URL_ENV = "REPLICATE_BASE_URL"
REPLICATE_DEFAULT_URL = "https://api.replicate.com"
EMISSARY_KEY_ENV = "EMISSARY_CLIENT_API_KEY"
EMISSARY_URL_ENV = "EMISSARY_SERVER_URL"
EMISSARY_DEFAULT_URL = "https://api.withemissary.com"

PROVIDER_NAMES = ("replicate", "emissary", "local")
_SETTING_KEYS = {"base_url", "url", "rate_limits", "retries", "timeout", "sync_wait", "deadline", "max_body_bytes",
                 "max_log_bytes", "unreachable_after"}


def normalize_base_url(url: str, *, variable: str) -> str:
    """Strip a trailing `/` and `/v1`: our paths carry `/v1` (like the official Python client)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable}: {url!r} is not an http(s) URL", hint="e.g. https://api.replicate.com")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _settings(config: Any, name: str) -> dict[str, Any]:
    providers = getattr(config, "providers", None) or {}
    raw = providers.get(name) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"jobrunner.yaml: providers.{name} must be a mapping")
    unknown = sorted(set(raw) - _SETTING_KEYS)
    if unknown:
        raise ConfigError(
            f"jobrunner.yaml: unknown key(s) under providers.{name}: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(_SETTING_KEYS))}",
        )
    return dict(raw)


def _timeout(settings: Mapping[str, Any], name: str) -> httpx.Timeout:
    value = settings.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"jobrunner.yaml: providers.{name}.timeout must be a positive number of seconds, got {value!r}")
    return httpx.Timeout(float(value), connect=min(10.0, float(value)), pool=60.0)


def _positive(settings: Mapping[str, Any], name: str, key: str, default: float, *, integer: bool = False) -> Any:
    """A positive number setting of providers.<name>, or its default."""
    value = settings.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (integer and value != int(value)):
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


def _credential(env: Mapping[str, str], variable: str, provider: str, where: str) -> str:
    value = (env.get(variable) or "").strip()
    if not value:
        raise CredentialsError(
            f"{provider}: no credential: {variable} is not set",
            hint=f"export {variable}=... ({where}); credentials are read from the environment only",
        )
    return value


def _base_url(name: str, env: Mapping[str, str], settings: dict[str, Any], variable: str, default: str) -> str:
    """The provider's base URL: the environment variable, else `providers.<name>.base_url`, else
    the public API; errors name whichever of the two settings it came from."""
    url = env.get(variable) or settings.get("base_url") or default
    return normalize_base_url(str(url), variable=variable if env.get(variable) else f"providers.{name}.base_url")


def get_provider(
    name: str,
    config: Any,
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
) -> ReplicateProvider | EmissaryProvider:
    """The provider called `name`, configured from the environment and the workspace config.

    `env` (default os.environ), `transport` and `sleep` exist for tests and benchmarks: an
    ASGI transport reaches the local platform in-process; a fake sleep makes retries instant.
    """
    env = os.environ if env is None else env
    settings = _settings(config, name)
    policy = RetryPolicy.from_config(settings.get("retries"))
    timeout = _timeout(settings, name)
    extra: dict[str, Any] = {"transport": transport, "timeout": timeout, "policy": policy, **_bounds(settings, name)}
    limiter_kwargs: dict[str, Any] = {}
    if sleep is not None:
        extra["sleep"] = sleep
        limiter_kwargs["sleep"] = sleep
    cache_dir = Path(root) / ".jobrunner" / "cache" / "schemas" / name
    if name == "replicate":
        token = _credential(env, REPLICATE_TOKEN_ENV, name, "an API token from https://replicate.com/account/api-tokens")
        limits = RateLimits.from_config(settings.get("rate_limits"), REPLICATE_LIMITS)
        http = HttpClient(
            name,
            _base_url(name, env, settings, REPLICATE_URL_ENV, REPLICATE_DEFAULT_URL),
            token=token,
            auth_header="Authorization",
            auth_scheme="Bearer",
            credential_var=REPLICATE_TOKEN_ENV,
            limiter=RateLimiter(limits, **limiter_kwargs),
            **extra,
        )
        return ReplicateProvider(http, schema_cache_dir=cache_dir,
                                 sync_create=SyncCreatePolicy.from_config(settings.get("sync_wait"), name))
    if name == "emissary":
        key = _credential(env, EMISSARY_KEY_ENV, name, "your Emissary API key")
        limits = RateLimits.from_config(settings.get("rate_limits"), UNLIMITED)
        http = HttpClient(
            name,
            _base_url(name, env, settings, EMISSARY_URL_ENV, EMISSARY_DEFAULT_URL),
            token=key,
            auth_header="X-API-Key",
            auth_scheme=None,
            credential_var=EMISSARY_KEY_ENV,
            limiter=RateLimiter(limits, **limiter_kwargs),
            **extra,
        )
        return EmissaryProvider(http)
    if name == "local":
        if settings.get("url"):
            settings["url"] = normalize_base_url(str(settings["url"]), variable="providers.local.url")
        limits = RateLimits.from_config(settings.get("rate_limits"), UNLIMITED)
        http = HttpClient(
            name,
            None,
            resolve_endpoint=local_endpoint(Path(root), settings, env),
            auth_header="Authorization",
            auth_scheme="Bearer",
            credential_var="the local platform token",
            limiter=RateLimiter(limits, **limiter_kwargs),
            **extra,
        )
        return LocalProvider(http, schema_cache_dir=cache_dir,
                             sync_create=SyncCreatePolicy.from_config(settings.get("sync_wait"), name))
    raise ConfigError(f"unknown provider {name!r}", hint=f"known providers: {', '.join(PROVIDER_NAMES)}")


__all__ = ["PROVIDER_NAMES", "get_provider", "normalize_base_url"]
