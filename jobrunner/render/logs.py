"""What `jobrunner logs --follow` prints next, when each fetch returns the log's last part only.

A provider returns a job's whole log on every fetch; jobrunner keeps only its end behind a marker
line (`jobrunner.providers.logmarker`, written by `jobrunner.providers.bodies`). Once a log
outgrows that, two fetches no longer share a prefix, so the new part is found by locating the end
of what was already printed in the new text.
"""
from __future__ import annotations

from jobrunner.providers.logmarker import LOG_TRUNCATED_PREFIX

# How much of the printed end is looked for in the next fetch: long first (a unique match), then
# shorter, for a log that grew by almost all of what is kept.
ANCHOR_CHARS = (4096, 1024, 256)


def log_increment(shown: str, text: str) -> tuple[str, bool]:
    """(the part of `text` not printed yet, whether it continues `shown`).

    `text` is the log as fetched now, `shown` what was printed of it so far (or its end). When the
    printed end cannot be found (the log was rewritten, or grew by more than what is kept between
    two fetches), the whole new text comes back, marker line included, with False.
    """
    if text.startswith(shown):
        return text[len(shown):], True
    if text.startswith(LOG_TRUNCATED_PREFIX) and shown:
        body = text.split("\n", 1)[1] if "\n" in text else ""
        for size in ANCHOR_CHARS:
            anchor = shown[-size:]
            at = body.rfind(anchor)
            if at >= 0:
                return body[at + len(anchor):], True
    return text, False


__all__ = ["ANCHOR_CHARS", "log_increment"]
