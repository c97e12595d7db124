"""RFC 3339 timestamps in UTC: the one parser and formatter jobrunner uses.

State, plans, providers' responses (Replicate sends up to 9 fractional digits) and messages all
carry timestamps; parsing them one way means one answer to "is this a time?" everywhere.
"""
from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

_FRACTION = re.compile(r"\.(\d+)")

# Two windows around "when was this job created", which mean different things:
#
# CLOCK_SKEW: how far a provider's clock may run behind ours, so that a job's `created_at` (its
# clock) precedes the intent time we recorded before sending the create (our clock). Finding the
# job a lost create made looks this far back. It stays narrow on purpose: a wider window lets an
# identical job created just before (another run's) pass for ours.
CLOCK_SKEW = timedelta(seconds=30)
# REFRESH_LOOKBACK: how much further back than the oldest tracked job's recorded creation a bulk
# refresh walks the provider's list pages. A margin of cost only (a job the walk misses is then
# fetched by id), so it is generous: skew, plus creation times recorded late by a slow answer.
REFRESH_LOOKBACK = timedelta(minutes=15)


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(value: Any) -> datetime | None:
    """Seconds since the epoch (Emissary's timestamps) as a UTC datetime, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (`Z` or an offset, 0-9 fractional digits) as an aware datetime.

    None for anything that is not one (None, non-strings, invalid dates). A timestamp without an
    offset is taken as UTC.
    """
    if type(value) is str and len(value) == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T":
        # What jobrunner writes (`to_rfc3339`, microseconds): ten times faster than the general
        # path, which `status` pays once per address.
        with contextlib.suppress(ValueError):  # not a date after all: the general path says so
            return datetime.fromisoformat(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # datetime keeps microseconds: pad or cut the fraction to 6 digits.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def to_rfc3339(value: datetime, *, timespec: str = "auto") -> str:
    """`2024-10-04T18:07:40.328000Z`: in UTC with a `Z` (a naive datetime is taken as UTC).

    `timespec` as for datetime.isoformat: "auto" shows microseconds only when there are some,
    "seconds" drops them, "microseconds" always shows six digits.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


__all__ = ["from_epoch", "parse_rfc3339", "to_rfc3339", "utcnow"]
