"""Durations as written in `timeout` and `--timeout`."""
from __future__ import annotations

import pytest

from jobrunner.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m45s", 5445), ("1d", 86400), ("500ms", 0.5),
    ("1.5h", 5400), ("45", 45), (120, 120), ("2H", 7200),
])
def test_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 hours", "h", "1h-5m", "0s", "0", -5, True, "1w"])
def test_invalid(text: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)  # type: ignore[arg-type]


def test_format_round_trips() -> None:
    for seconds in (1, 59, 60, 3600, 5445, 86400 + 1):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(0.25) == "250ms"


def test_days_can_be_refused_like_go() -> None:
    assert parse_duration("1h30m", allow_days=False) == 5400
    with pytest.raises(DurationError, match=r"ms, s, m, h\)"):
        parse_duration("1d", allow_days=False)


def test_cli_flavour_raises_a_usage_error_naming_the_flag() -> None:
    from jobrunner.errors import UsageError
    from jobrunner.reconcile.timeutil import parse_duration as parse_flag

    assert parse_flag(None) is None
    assert parse_flag("1d", what="--timeout") == 86400
    with pytest.raises(UsageError, match=r"^--timeout: invalid duration 'soon'"):
        parse_flag("soon", what="--timeout")
