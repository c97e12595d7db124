"""Time helpers shared by state, matching and rendering: RFC 3339 in UTC and `2h30m` durations."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from jobrunner.durations import DurationError
from jobrunner.durations import parse_duration as _parse_duration
from jobrunner.errors import UsageError


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp (any fractional precision, `Z` or offset); None when unparsable."""
    if not text:
        return None
    s = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python < 3.11 would choke on 9 fractional digits; 3.11 accepts them, but trim to 6 anyway.
    m = re.match(r"^(.*\.\d{6})\d+(.*)$", s)
    if m:
        s = m.group(1) + m.group(2)
    try:
        out = datetime.fromisoformat(s)
    except ValueError:
        return None
    return out if out.tzinfo else out.replace(tzinfo=timezone.utc)


def parse_duration(text: str | int | float | None, *, what: str = "duration") -> float | None:
    """Seconds for a duration given on the command line (None stays None); UsageError otherwise.

    The spelling is jobrunner.durations' (`30s`, `5m`, `2h30m`, `1d`, a bare number of seconds);
    this only turns its DurationError into the CLI's usage error naming `what` (e.g. `--timeout`).
    """
    if text is None:
        return None
    try:
        return _parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"{what}: {exc}", hint="use a number of seconds or a form like 30s, 5m, 2h30m") from None


def format_age(seconds: float) -> str:
    """A short human age: 42s, 5m, 3h, 2d."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
