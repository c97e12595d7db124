"""The request classes and rate limits a provider documents: pure data the adapters name.

An adapter says which limits its provider documents (`Endpoint.rate_limits`) and which class each
job kind's creates spend (`Costing.rate_class`); the estimator reads the same figures for a plan's
wall clock, and `providers.ratelimit` builds its token buckets from them. They live here, apart
from the buckets (which need a clock and an event loop), so that the adapters and the estimator
stay in the pure core.

Request classes: `create` (prediction creates: Replicate's 600/min bucket) and `other`
(everything else, including training creates, which Replicate counts in its 3000/min bucket).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobrunner.errors import ConfigError

CREATE = "create"
OTHER = "other"
REQUEST_CLASSES = (CREATE, OTHER)

# Replicate's documented limits (https://replicate.com/docs rate limits), requests per minute.
REPLICATE_LIMITS: dict[str, float | None] = {CREATE: 600.0, OTHER: 3000.0}
# No documented limit: do not throttle up front, but still obey 429 / Retry-After.
UNLIMITED: dict[str, float | None] = {CREATE: None, OTHER: None}


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per class (None = unlimited) and the burst per class (None = default)."""

    create_per_minute: float | None = None
    other_per_minute: float | None = None
    create_burst: float | None = None
    other_burst: float | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, defaults: Mapping[str, float | None]) -> RateLimits:
        """Read `providers.<name>.rate_limits` from the workspace config over `defaults`.

        Keys: create_per_minute, other_per_minute (a number, or null/0 for unlimited),
        create_burst, other_burst (tokens that may be spent at once).
        """
        raw = dict(raw or {})
        known = {"create_per_minute", "other_per_minute", "create_burst", "other_burst"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"jobrunner.yaml: unknown rate_limits key(s): {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(known))}",
            )
        values: dict[str, float | None] = {
            "create_per_minute": defaults.get(CREATE),
            "other_per_minute": defaults.get(OTHER),
            "create_burst": None,
            "other_burst": None,
        }
        for key, value in raw.items():
            if value is None or value == 0:
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(
                    f"jobrunner.yaml: rate_limits.{key} must be a positive number, got {value!r}",
                    hint="use requests per minute, e.g. create_per_minute: 600 (0 or null = unlimited)",
                )
            values[key] = float(value)
        return cls(**values)


__all__ = ["CREATE", "OTHER", "REPLICATE_LIMITS", "REQUEST_CLASSES", "UNLIMITED", "RateLimits"]
