"""Time helpers of the commands and the reconciler: RFC 3339 in UTC, `--timeout` values, ages.

Timestamps are jobrunner.timestamps' and durations jobrunner.durations' (re-exported here for the
reconciler); this adds what only the command line needs.
"""
from __future__ import annotations

from jobrunner.durations import DurationError, format_age
from jobrunner.durations import parse_duration as _parse_duration
from jobrunner.errors import UsageError
from jobrunner.timestamps import parse_rfc3339, to_rfc3339, utcnow

__all__ = ["format_age", "parse_duration", "parse_rfc3339", "to_rfc3339", "utcnow"]


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

