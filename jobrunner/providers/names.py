"""The closed set of provider names, defined once.

A module of its own (no imports) so that the plainest data types (`resources.Resource`) can name
the default provider without importing the adapters that describe each provider.
"""
from __future__ import annotations

from typing import Literal, get_args

ProviderName = Literal["local", "replicate", "emissary"]
PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)
# A manifest without `provider:` runs on the embedded platform: nothing to sign up for.
DEFAULT_PROVIDER: ProviderName = "local"

__all__ = ["DEFAULT_PROVIDER", "PROVIDER_NAMES", "ProviderName"]
