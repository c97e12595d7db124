"""Human durations (`90s`, `30m`, `2h`, `1h30m45s`, `1d`) as used by `timeout` and `--timeout`.

The spelling matches Replicate's `Cancel-After` header and Go's time.ParseDuration for the units
people actually write, so a manifest's `timeout` can be passed on unchanged.
"""
from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


class DurationError(ValueError):
    """The text is not a duration; the message says what is accepted."""


def parse_duration(text: str | int | float, *, allow_days: bool = True) -> float:
    """Seconds for a duration such as `2h`, `30m`, `1h30m45s` or a bare number of seconds.

    Raises DurationError for anything else, including zero and negative durations. With
    `allow_days=False` the `d` unit is refused too, as Go's time.ParseDuration (and so Replicate's
    `Cancel-After` header) does.
    """
    if isinstance(text, bool):
        raise DurationError(f"invalid duration {text!r}: use a number with a unit such as 30m, 2h or 1h30m")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            seconds = float(s)
        elif _WHOLE.fullmatch(s) and (allow_days or not any(u == "d" for _, u in _PART.findall(s))):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
        else:
            units = "ms, s, m, h, d" if allow_days else "ms, s, m, h"
            raise DurationError(
                f"invalid duration {text!r}: use a number with a unit ({units}) such as 30m, 2h or 1h30m45s"
            )
    if seconds <= 0:
        raise DurationError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The compact spelling of a duration: 5400 -> `1h30m`, 0.5 -> `500ms`."""
    if seconds < 1:
        return f"{int(round(seconds * 1000))}ms"
    total = int(round(seconds))
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out += f"{n}{unit}"
    return out or "0s"


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


__all__ = ["DurationError", "format_age", "format_duration", "parse_duration"]
