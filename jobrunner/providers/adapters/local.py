"""The local adapter: the Replicate wire against the embedded platform (`jobrunner serve`).

Same requests, outputs and capabilities as Replicate, except that it calls http webhooks too (it
runs on this machine) and knows its built-in models' version schemas offline, so `validate`
checks their inputs without a platform running.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobrunner.providers.adapters.local_builtins import BUILTINS
from jobrunner.providers.adapters.replicate import REPLICATE


def builtin_version_schema(version_id: str) -> dict[str, Any] | None:
    """The OpenAPI document of one of the platform's built-in model versions, else None."""
    for model in BUILTINS:
        if model.version == version_id:
            return model.openapi_schema
    return None


LOCAL = replace(
    REPLICATE,
    name="local",
    title="the local platform",
    client="jobrunner.providers.local:build_client",
    capabilities=replace(REPLICATE.capabilities, https_webhooks_only=False),
    version_schema=builtin_version_schema,
    endpoint=None,  # providers.local.url, else the user's platform (started on first use)
    settings_keys=frozenset({"data_dir", "idle_stop"}),  # the auto-started platform's (jobrunner.local.autostart)
    # Every job runs on this machine: the `local` SKU of the price table (free, overridable).
    costing=replace(REPLICATE.costing, fixed_hardware="local"),
)

__all__ = ["LOCAL", "builtin_version_schema"]
