"""RFC 3339 timestamps: one parser for state, providers and messages."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from jobrunner.timestamps import parse_rfc3339, to_rfc3339

WHEN = datetime(2024, 10, 4, 18, 7, 40, 328000, tzinfo=UTC)


def test_parse_accepts_z_offsets_and_any_fraction() -> None:
    assert parse_rfc3339("2024-10-04T18:07:40.328Z") == WHEN
    assert parse_rfc3339("2024-10-04t18:07:40.328z") == WHEN
    assert parse_rfc3339("2024-10-04T20:07:40.328+02:00") == WHEN
    assert parse_rfc3339("2023-08-16T19:33:26.678378653Z").microsecond == 678378  # Replicate's 9 digits
    assert parse_rfc3339("2024-10-04T18:07:40") == WHEN.replace(microsecond=0)  # no offset: UTC


def test_parse_says_none_for_what_is_not_a_time() -> None:
    for value in (None, "", "  ", "soon", "2022-04-26T20:00:84.583803Z", 1700000000):
        assert parse_rfc3339(value) is None


def test_format_in_utc_with_z() -> None:
    assert to_rfc3339(WHEN) == "2024-10-04T18:07:40.328000Z"
    assert to_rfc3339(WHEN.replace(microsecond=0)) == "2024-10-04T18:07:40Z"
    assert to_rfc3339(WHEN, timespec="seconds") == "2024-10-04T18:07:40Z"
    assert to_rfc3339(WHEN.replace(microsecond=0), timespec="microseconds") == "2024-10-04T18:07:40.000000Z"
    assert to_rfc3339(WHEN.astimezone(timezone(timedelta(hours=-5)))) == "2024-10-04T18:07:40.328000Z"
    assert to_rfc3339(datetime(2024, 1, 1)) == "2024-01-01T00:00:00Z"  # naive is UTC
    assert parse_rfc3339(to_rfc3339(WHEN)) == WHEN


def test_the_form_jobrunner_writes_parses_as_the_general_path_does() -> None:
    # 27 characters, six fractional digits and a Z (to_rfc3339 with microseconds) take a fast path.
    for when in (WHEN, WHEN.replace(microsecond=1), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        text = to_rfc3339(when, timespec="microseconds")
        assert len(text) == 27 and parse_rfc3339(text) == when
        assert getattr(parse_rfc3339(text), "tzinfo", None) is UTC
        assert parse_rfc3339(text) == parse_rfc3339(text[:-1] + "+00:00") == parse_rfc3339(" " + text)
    for value in ("2024-13-04T18:07:40.328000Z", "2024-10-04T18:07:60.328000Z"):
        assert parse_rfc3339(value) is None
