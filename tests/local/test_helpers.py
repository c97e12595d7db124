"""Small pure helpers of the local platform: multipart parsing, durations, timestamps, ids."""
from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from jobrunner.local.clock import new_id, parse_rfc3339, rfc3339
from jobrunner.local.multipart import MultipartError, parse_multipart
from jobrunner.local.replicate.serializers import parse_duration


def test_multipart_round_trip_keeps_binary_content():
    payload = bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    request = httpx.Request(
        "POST",
        "http://x/",
        files={"content": ("../a b.bin", payload, "application/zip")},
        data={"type": "application/zip"},
    )
    parts = parse_multipart(request.read(), request.headers["content-type"])
    assert parts["content"].data == payload
    assert parts["content"].filename == "../a b.bin" and parts["content"].content_type == "application/zip"
    assert parts["type"].text() == "application/zip" and parts["type"].filename is None


def test_multipart_rejects_other_bodies():
    with pytest.raises(MultipartError):
        parse_multipart(b"{}", "application/json")
    with pytest.raises(MultipartError):
        parse_multipart(b"x", "multipart/form-data")


@pytest.mark.parametrize(
    "text,seconds",
    [("30s", 30), ("5m", 300), ("1h", 3600), ("2h30m", 9000), ("1h30m45s", 5445), ("90", 90), ("1.5", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1d", "m5", "-5s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_timestamps_and_ids():
    dt = datetime(2024, 10, 4, 18, 7, 40, 328000, tzinfo=UTC)
    assert rfc3339(dt) == "2024-10-04T18:07:40.328000Z"
    assert parse_rfc3339("2024-10-04T18:07:40.328Z") == dt
    assert parse_rfc3339("2024-10-04T20:07:40.328+02:00") == dt
    assert rfc3339(None) is None
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 26 and i.isalnum() and i.islower() for i in ids)
