"""Every class of provider failure becomes the right jobrunner error, keeping the provider's detail.

Payloads are shaped like the recorded Replicate/Emissary bodies in fixtures/. Retries run against a
fake clock, so the schedule is asserted without waiting.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from jobrunner.errors import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from jobrunner.providers.base import CreateRequest
from jobrunner.providers.http import parse_retry_after

from .conftest import EMISSARY, REPLICATE, TOKEN, fixture, problem, replicate_provider, run

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
GET_PATH = "/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu"
CREATE = CreateRequest(job_kind="prediction", body={"input": {"text": "Alice"}}, version=VERSION)


def _ok() -> httpx.Response:
    return httpx.Response(200, json=fixture("replicate/prediction_get_succeeded.json"))


def _created() -> httpx.Response:
    body = fixture("replicate/prediction_get_succeeded.json") | {"status": "starting", "output": None}
    return httpx.Response(201, json=body)


async def _get(provider):
    try:
        return await provider.get("prediction", "gm3qorzdhgbfurvjtvhg6dckhu")
    finally:
        await provider.aclose()


async def _create(provider):
    try:
        return await provider.create(CREATE)
    finally:
        await provider.aclose()


def _no_token(err: Exception) -> None:
    for text in (str(err), repr(err), getattr(err, "hint", "") or "", getattr(err, "detail", "") or ""):
        assert TOKEN not in text


def test_401_is_an_auth_error_naming_the_variable_not_the_token(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(return_value=problem(401, fixture("replicate/error_401_unauthenticated.json")))
        with pytest.raises(AuthError) as info:
            run(_get(replicate_provider(fake_time)))
    err = info.value
    assert err.status == 401 and err.provider == "replicate"
    assert err.detail == "Unauthenticated: You did not pass a valid authentication token"
    assert "REPLICATE_API_TOKEN" in (err.hint or "")
    assert route.call_count == 1  # never retried
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    _no_token(err)


def test_402_payment_required(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.post("/v1/predictions").mock(
            return_value=problem(402, {"detail": "You have insufficient credit", "status": 402})
        )
        with pytest.raises(PaymentRequiredError) as info:
            run(_create(replicate_provider(fake_time)))
    assert info.value.detail == "You have insufficient credit"
    assert not info.value.ambiguous


def test_404_keeps_the_provider_detail(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(
            return_value=problem(404, {"detail": "The requested resource could not be found.", "status": 404})
        )
        with pytest.raises(NotFoundError) as info:
            run(_get(replicate_provider(fake_time)))
    assert info.value.detail == "The requested resource could not be found."
    assert "HTTP 404" in str(info.value) and "could not be found" in str(info.value)
    assert route.call_count == 1


def test_422_invalid_fields_are_shown_and_never_retried(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(
            return_value=problem(422, fixture("replicate/error_422_input_validation.json"))
        )
        with pytest.raises(InvalidRequestError) as info:
            run(_create(replicate_provider(fake_time)))
    err = info.value
    assert err.status == 422
    assert "Input validation failed" in err.detail
    assert "Additional property signal is not allowed" in err.detail
    assert route.call_count == 1 and fake_time.sleeps == []


def test_422_invalid_version(fake_time):
    body = {
        "title": "Invalid version or not permitted",
        "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
        "status": 422,
    }
    with respx.mock(base_url=REPLICATE) as mock:
        mock.post("/v1/predictions").mock(return_value=problem(422, body))
        with pytest.raises(InvalidRequestError) as info:
            run(_create(replicate_provider(fake_time)))
    assert info.value.detail.startswith("Invalid version or not permitted: The specified version does not exist")


def test_429_retry_after_seconds_is_honoured_then_succeeds(fake_time):
    throttled = problem(429, {"detail": "Request was throttled. Your rate limit resets in ~7s."}, {"Retry-After": "7"})
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(side_effect=[throttled, _ok()])
        job = run(_get(replicate_provider(fake_time)))
    assert job.status == "succeeded"
    assert route.call_count == 2
    retry_sleeps = [s for s in fake_time.sleeps if s >= 1]
    assert retry_sleeps and 7.0 <= retry_sleeps[0] <= 7.7


def test_429_retry_after_http_date(fake_time):
    now = datetime.now(UTC).replace(microsecond=0)
    when = format_datetime(now + timedelta(seconds=30), usegmt=True)
    throttled = problem(429, {"detail": "Request was throttled."}, {"Retry-After": when})
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(side_effect=[throttled, _ok()])
        run(_get(replicate_provider(fake_time)))
    assert route.call_count == 2
    assert any(25 <= s <= 33.5 for s in fake_time.sleeps)


def test_429_body_retry_after_of_the_low_credit_throttle(fake_time):
    body = {
        "detail": "Request was throttled. Your rate limit for creating predictions is reduced to 6 requests per minute "
        "with a burst of 1 requests while you have less than $5.0 in credit. Your rate limit resets in ~5s.",
        "status": 429,
        "retry_after": 5,
    }
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(side_effect=[problem(429, body), _created()])
        job = run(_create(replicate_provider(fake_time)))
    # A 429 means the server refused before creating anything: re-sending a create is safe.
    assert route.call_count == 2 and job.status == "pending"
    assert any(5.0 <= s <= 5.5 for s in fake_time.sleeps)


def test_429_that_asks_too_long_is_raised_for_the_caller_to_schedule(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(return_value=problem(429, {"detail": "slow down"}, {"Retry-After": "3600"}))
        with pytest.raises(RateLimitedError) as info:
            run(_get(replicate_provider(fake_time)))
    assert info.value.retry_after == 3600 and route.call_count == 1
    assert "3600" in info.value.hint


def test_429_exhausting_attempts(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(
            return_value=problem(429, {"detail": "Request was throttled."}, {"Retry-After": "1"})
        )
        with pytest.raises(RateLimitedError):
            run(_get(replicate_provider(fake_time, max_attempts=3)))
    assert route.call_count == 3


def test_500_on_a_read_is_retried_with_jittered_exponential_backoff(fake_time):
    boom = problem(500, {"detail": "Internal server error"})
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(side_effect=[boom, boom, _ok()])
        job = run(_get(replicate_provider(fake_time)))
    assert job.status == "succeeded" and route.call_count == 3
    # backoff n is in [base*2**(n-1)/2, base*2**(n-1)] with base 0.5
    assert 0.25 <= fake_time.sleeps[0] <= 0.5
    assert 0.5 <= fake_time.sleeps[1] <= 1.0


def test_502_with_an_html_body(fake_time):
    html = ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
            "<hr><center>nginx</center></body></html>")
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(
            return_value=httpx.Response(502, text=html, headers={"Content-Type": "text/html"})
        )
        with pytest.raises(ServerError) as info:
            run(_get(replicate_provider(fake_time, max_attempts=3)))
    err = info.value
    assert route.call_count == 3
    assert err.status == 502 and "<" not in err.detail and "502 Bad Gateway" in err.detail and "nginx" in err.detail
    assert not err.ambiguous


def test_5xx_on_a_create_is_not_resent_and_is_ambiguous(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(return_value=problem(503, {"detail": "Service unavailable"}))
        with pytest.raises(ServerError) as info:
            run(_create(replicate_provider(fake_time)))
    assert route.call_count == 1
    assert info.value.ambiguous is True


def test_truncated_json_is_a_protocol_error(fake_time):
    whole = json.dumps(fixture("replicate/prediction_get_succeeded.json"))
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(
            return_value=httpx.Response(
                200, content=whole[: len(whole) // 2].encode(), headers={"Content-Type": "application/json"}
            )
        )
        with pytest.raises(ProtocolError) as info:
            run(_get(replicate_provider(fake_time)))
    assert "truncated" in str(info.value)


def test_a_json_body_that_is_not_text_is_a_protocol_error_not_a_crash(fake_time):
    # json.loads raises UnicodeDecodeError (a ValueError without a JSON position) for these bytes.
    whole = json.dumps(fixture("replicate/prediction_get_succeeded.json")).encode()
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(
            return_value=httpx.Response(200, content=b"\x80" + whole, headers={"Content-Type": "application/json"})
        )
        with pytest.raises(ProtocolError) as info:
            run(_get(replicate_provider(fake_time)))
    assert "invalid JSON: the body is not text" in str(info.value)
    assert info.value.provider == "replicate"


def test_empty_body_is_a_protocol_error(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(
            return_value=httpx.Response(200, content=b"", headers={"Content-Type": "application/json"})
        )
        with pytest.raises(ProtocolError) as info:
            run(_get(replicate_provider(fake_time)))
    assert "empty body" in str(info.value)


def test_wrong_content_type_is_a_protocol_error(fake_time):
    page = "<html><body>Welcome to the captive portal</body></html>"
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(
            return_value=httpx.Response(200, text=page, headers={"Content-Type": "text/html; charset=utf-8"})
        )
        with pytest.raises(ProtocolError) as info:
            run(_get(replicate_provider(fake_time)))
    assert "text/html" in str(info.value) and "captive portal" in str(info.value)
    assert "api.replicate.com" in info.value.hint


def test_error_with_an_empty_body_still_names_the_status(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(return_value=httpx.Response(404, content=b""))
        with pytest.raises(NotFoundError) as info:
            run(_get(replicate_provider(fake_time)))
    assert info.value.detail is None and "HTTP 404" in str(info.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("reset"),
    ],
)
def test_create_dropped_after_sending_is_ambiguous_and_not_resent(fake_time, exc):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(side_effect=exc)
        with pytest.raises(TransportError) as info:
            run(_create(replicate_provider(fake_time)))
    assert route.call_count == 1  # the create may exist: never sent twice
    assert info.value.ambiguous is True
    assert "looks the job up" in info.value.hint


def test_create_refused_before_sending_is_retried(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(side_effect=[httpx.ConnectError("Connection refused"), _created()])
        job = run(_create(replicate_provider(fake_time)))
    assert route.call_count == 2 and job.id == "gm3qorzdhgbfurvjtvhg6dckhu"


def test_read_connection_errors_are_retried_then_raised_unambiguous(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(GET_PATH).mock(side_effect=httpx.ReadTimeout("timed out"))
        with pytest.raises(TransportError) as info:
            run(_get(replicate_provider(fake_time, max_attempts=3)))
    assert route.call_count == 3 and info.value.ambiguous is False
    assert "timed out waiting for the answer" in str(info.value)


def test_a_token_echoed_by_the_server_is_scrubbed(fake_time):
    body = {"detail": f"Token {TOKEN} is not valid for this account", "status": 403}
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(GET_PATH).mock(return_value=problem(403, body))
        with pytest.raises(AuthError) as info:
            run(_get(replicate_provider(fake_time)))
    _no_token(info.value)
    assert "(sensitive)" in info.value.detail


def test_a_very_short_credential_does_not_blank_out_the_message():
    from jobrunner.providers.http import HttpClient

    http = HttpClient("emissary", EMISSARY, token="t", auth_header="X-API-Key", auth_scheme=None,
                      credential_var="EMISSARY_CLIENT_API_KEY")
    text = "upload dataset train.jsonl failed: HTTP 404 Not Found: project ms-1 not found"
    assert http.scrub(text) == text
    long = HttpClient("emissary", EMISSARY, token="k3y-0123456789", auth_header="X-API-Key", auth_scheme=None,
                      credential_var="EMISSARY_CLIENT_API_KEY")
    assert long.scrub("bad key k3y-0123456789") == "bad key (sensitive)"
    run(http.aclose())
    run(long.aclose())


def test_parse_retry_after():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("2026-01-01T12:00:10Z", now) == 10.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0  # in the past: go now
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None


def test_next_links_are_rerooted_on_the_base_url_with_its_prefix():
    from jobrunner.providers.http import HttpClient

    http = HttpClient("replicate", "http://127.0.0.1:9/replicate", token="t")
    assert http.url("/v1/predictions") == "http://127.0.0.1:9/replicate/v1/predictions"
    assert http.url("https://api.replicate.com/v1/predictions?cursor=abc") == "http://127.0.0.1:9/replicate/v1/predictions?cursor=abc"
    assert http.url("http://127.0.0.1:9/replicate/v1/predictions?cursor=abc") == "http://127.0.0.1:9/replicate/v1/predictions?cursor=abc"
    assert http.url("http://elsewhere:9/replicate/v1/trainings") == "http://127.0.0.1:9/replicate/v1/trainings"
