"""The provider table: every provider jobrunner knows, by name, as a `ProviderAdapter`.

This is the one place a provider is registered. The core looks adapters up here
(`adapter_for(resource.provider)`); `providers.registry.get_provider` builds the wire client the
adapter names. Adding a provider: write `adapters/<name>.py` defining its `ProviderAdapter`, add
its name to `providers.names.ProviderName`, and add it to `ADAPTERS` below.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from jobrunner.errors import ConfigError
from jobrunner.providers.adapter import ProviderAdapter
from jobrunner.providers.adapters.emissary import EMISSARY
from jobrunner.providers.adapters.local import LOCAL
from jobrunner.providers.adapters.replicate import REPLICATE
from jobrunner.providers.names import PROVIDER_NAMES

ADAPTERS: Mapping[str, ProviderAdapter] = MappingProxyType({a.name: a for a in (LOCAL, REPLICATE, EMISSARY)})


def find_adapter(name: str) -> ProviderAdapter | None:
    """The adapter of provider `name`, or None for a name no provider has (validation reports it)."""
    return ADAPTERS.get(name)


def adapter_for(name: str) -> ProviderAdapter:
    """The adapter of provider `name`; an unknown name is a ConfigError listing the known ones."""
    adapter = find_adapter(name)
    if adapter is None:
        raise ConfigError(f"unknown provider {name!r}", hint=f"known providers: {', '.join(PROVIDER_NAMES)}")
    return adapter


__all__ = ["ADAPTERS", "adapter_for", "find_adapter"]
