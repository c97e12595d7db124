"""What the Replicate wire offers built in: the local provider's built-in models, their fixed
version ids and schemas, and the local account's name.

The data is the local provider's contract (`jobrunner.providers.adapters.local_builtins`, pure):
manifests pin these version ids and `validate` checks inputs against these schemas without a
platform running, so it is defined in the core and served from here.
"""
from __future__ import annotations

from jobrunner.providers.adapters.local_builtins import (
    ACCOUNT,
    BUILTINS,
    COG_VERSION,
    ECHO_VERSION,
    NGRAM_VERSION,
    OWNER,
    SLEEP_VERSION,
    BuiltinModel,
    cog_schema,
    trained_ngram_schema,
)

__all__ = [
    "ACCOUNT", "BUILTINS", "COG_VERSION", "ECHO_VERSION", "NGRAM_VERSION", "OWNER", "SLEEP_VERSION", "BuiltinModel",
    "cog_schema", "trained_ngram_schema",
]
