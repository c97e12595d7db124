"""Input schemas of model versions that are known without asking a provider.

A pinned version is immutable, so its input schema never changes. Offline, jobrunner knows it in
two cases: versions the provider's adapter knows (`ProviderAdapter.version_schema`: the local
platform's built-in models, fixed version ids shipped with jobrunner), and
versions whose OpenAPI document an earlier plan or apply cached under
`<workspace>/.jobrunner/cache/schemas/<provider>/<version id>.json`. `validate` checks inputs
against these; other versions are checked by `plan`, which asks the provider.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import find_adapter

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_WITH_MODEL = re.compile(r"[^:/\s]+/[^:/\s]+:(?P<id>[0-9a-f]{64})\Z")

TRAINING_INPUT = "TrainingInput"
PREDICTION_INPUT = "Input"


def version_id(version: Any) -> str | None:
    """The 64-hex id in `version` (a bare id or owner/name:id), else None (references, official models)."""
    if not isinstance(version, str):
        return None
    if _HEX64.match(version):
        return version
    m = _WITH_MODEL.match(version)
    return m["id"] if m else None


def _openapi(provider: str, vid: str, root: Path,
             source: Callable[[str], dict[str, Any] | None] | None) -> dict[str, Any] | None:
    cached = root / ".jobrunner" / "cache" / "schemas" / provider / f"{vid}.json"
    try:
        data = json.loads(cached.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    return source(vid) if source is not None else None


def known_input_schema(provider: str, version: Any, kind: str, root: Path) -> dict[str, Any] | None:
    """The JSON Schema of a version's `Input` (kind PREDICTION_INPUT) or `TrainingInput`, if known.

    Returned self-contained: Cog's `#/components/schemas/...` references resolve inside it.
    """
    vid = version_id(version)
    adapter = find_adapter(provider)
    if vid is None or adapter is None or adapter.form is not RequestForm.VERSIONED:
        return None
    openapi = _openapi(provider, vid, root, adapter.version_schema)
    if not openapi:
        return None
    components = openapi.get("components")
    schemas = components.get("schemas") if isinstance(components, dict) else None
    schema = schemas.get(kind) if isinstance(schemas, dict) else None
    if not isinstance(schema, dict):
        return None
    return {**schema, "components": components}


__all__ = ["TRAINING_INPUT", "PREDICTION_INPUT", "known_input_schema", "version_id"]
