"""Time and identifiers as the Replicate wire shows them.

Timestamps are RFC 3339 in UTC with a `Z` and microseconds (`2024-10-04T18:07:40.328000Z`); ids are
26 lowercase base32 characters like Replicate's. Kept apart so tests can substitute the clock.
"""
from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime

from jobrunner.timestamps import parse_rfc3339 as _parse
from jobrunner.timestamps import to_rfc3339


class Clock:
    """Wall clock (for timestamps) and monotonic clock (for durations); swappable in tests."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def rfc3339(dt: datetime | None) -> str | None:
    """`2024-10-04T18:07:40.328000Z` (always six fractional digits, as Replicate shows them), or None."""
    if dt is None:
        return None
    return to_rfc3339(dt, timespec="microseconds")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp (a `Z` suffix or offset; naive means UTC), in UTC.

    Raises ValueError when `text` is not one (the API turns that into a 400/422).
    """
    dt = _parse(text)
    if dt is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    return dt.astimezone(UTC)


def new_id() -> str:
    """A random 26-character lowercase base32 id (Replicate's shape)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()[:26]
