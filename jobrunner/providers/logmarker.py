"""The marker line in front of a job log that jobrunner kept only the end of.

`providers.bodies` writes it while an answer streams in (it drops a log's head); `logs --follow`
(`render.logs`, `commands.logs`) reads it to find where the kept end starts. It lives in the pure
core so that the renderer reading it never imports the provider layer that writes it.
"""
from __future__ import annotations

LOG_TRUNCATED_PREFIX = "[jobrunner: log truncated:"


def truncation_marker(dropped: int, kept: int) -> str:
    """The line put in front of a truncated log (it says how much is missing and what follows)."""
    return (f"{LOG_TRUNCATED_PREFIX} the first {dropped:,} bytes were not kept; "
            f"the last {kept:,} bytes follow]\n")


__all__ = ["LOG_TRUNCATED_PREFIX", "truncation_marker"]
