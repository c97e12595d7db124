"""Provider construction: credentials and endpoints from the environment, knobs from jobrunner.yaml.

`get_provider(name, config, root)` is how the rest of jobrunner obtains a provider: it looks the
name up in the adapter table (`providers.adapters.ADAPTERS`) and calls the `build_client` the
adapter names, with the checked settings (`providers.settings.ClientContext`). Credentials
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
      emissary: {base_url: https://api.withemissary.com}   # or `local`: the local platform below,
                                                          # with its token (EMISSARY_SERVER_URL wins)
      local: {url: http://127.0.0.1:8765}       # else the user's platform is auto-started, with
                                                # data_dir (default per user) and idle_stop (15m)

A missing credential is a CredentialsError naming the variable; the value itself never appears
in any message, repr or log.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import Provider
from jobrunner.providers.http import Sleep
from jobrunner.providers.names import PROVIDER_NAMES
from jobrunner.providers.settings import (
    ClientContext,
    normalize_base_url,
    provider_settings,
)


def client_factory(reference: str) -> Callable[[ClientContext], Provider]:
    """The `build_client` function an adapter names as "module:function"."""
    module, _, function = reference.partition(":")
    factory: Callable[[ClientContext], Provider] = getattr(importlib.import_module(module), function)
    return factory


def get_provider(
    name: str,
    config: Any,
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
) -> Provider:
    """The provider called `name`, configured from the environment and the workspace config.

    `env` (default os.environ), `transport` and `sleep` exist for tests and benchmarks: an
    ASGI transport reaches the local platform in-process; a fake sleep makes retries instant.
    An unknown name is a ConfigError listing the known providers.
    """
    adapter = adapter_for(name)
    ctx = ClientContext(name, Path(root), provider_settings(config, name, adapter.settings_keys),
                        os.environ if env is None else env,
                        transport=transport, sleep=sleep, endpoint=adapter.endpoint, config=config)
    return client_factory(adapter.client)(ctx)


__all__ = ["PROVIDER_NAMES", "client_factory", "get_provider", "normalize_base_url"]
