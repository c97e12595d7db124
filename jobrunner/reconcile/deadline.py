"""Saying why a job was canceled when its own `spec.timeout` ran out.

A provider reports a job stopped at its deadline as plain `canceled` (Replicate's `Cancel-After`;
`aborted` when it had not started yet), exactly like a cancel by hand. Printed as it is, the user
reads `canceled: canceled` and cannot tell that the timeout they set is what stopped it. A
canceled job whose manifest sets a timeout and that ran at least that long (or was aborted) was
stopped by that deadline: the message says so and how to give it longer. Pure: no I/O.
"""
from __future__ import annotations

from typing import Any

from jobrunner.durations import DurationError, format_duration, parse_duration
from jobrunner.providers.base import ABORTED, CANCELED, RemoteJob

# Clocks of the provider and the deadline timer differ by a little; a job canceled this close to
# its timeout was canceled by it.
_SLACK_SECONDS = 0.5


def deadline_reason(final: RemoteJob, timeout: Any) -> str | None:
    """`its timeout of 5s (spec.timeout) ran out ...` when `final` was stopped by that deadline, else None."""
    if final.status not in (CANCELED, ABORTED) or timeout in (None, "", False):
        return None
    try:
        seconds = parse_duration(timeout)
    except DurationError:
        return None
    if not (final.status == ABORTED or final.raw_status == "aborted" or _ran_for(final, seconds)):
        return None
    return (f"its timeout of {format_duration(seconds)} (spec.timeout) ran out before it finished; "
            "raise spec.timeout to give it longer")


def _ran_for(final: RemoteJob, seconds: float) -> bool:
    if final.created_at is None or final.completed_at is None:
        return False
    return (final.completed_at - final.created_at).total_seconds() >= seconds - _SLACK_SECONDS


__all__ = ["deadline_reason"]
