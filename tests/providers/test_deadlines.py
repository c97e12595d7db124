"""Deadlines and body caps of the one request helper (`jobrunner.providers.http`).

Hangs are tested against real sockets on loopback (`tests/hostile_http.py`): a server that sends
headers and then one byte a second, one that never answers, and a port nobody listens on. Body
caps and log trimming use respx with payloads shaped like the real Replicate fixtures.

Which bound ended a request is asserted from what the code reports and counts (the message names
the bound; the number of attempts the server saw or the client sent; the backoffs it asked for),
not from how long it took: on a busy machine the wall clock says little. Each case also has a
wall-clock ceiling, `HANG`, far above the bound under test yet far below what the same request
takes without it (a trickled body of 4 KB at one byte per 0.5 s: over half an hour).
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.errors import ProtocolError, TransportError
from jobrunner.providers.bodies import LOG_TRUNCATED_PREFIX, LogTrimmer
from jobrunner.providers.http import HttpClient, RetryPolicy, command_deadline
from jobrunner.providers.replicate import ReplicateProvider
from tests.hostile_http import HostileServer, refused_url
from tests.providers.conftest import REPLICATE, TOKEN, fixture

# Seconds: a request still running after this is hanging, whatever the load on the machine.
HANG = 20.0


def client(url: str, *, timeout: float = 1.0, deadline: float = 3.0, attempts: int = 5, **kw: Any) -> HttpClient:
    return HttpClient("replicate", url, token=TOKEN, credential_var="REPLICATE_API_TOKEN",
                      policy=RetryPolicy(max_attempts=attempts, backoff_base=0.1, backoff_max=0.2),
                      timeout=httpx.Timeout(timeout, connect=timeout), deadline=deadline, **kw)


async def _timed(coro: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await coro
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# --- hangs ------------------------------------------------------------------------------------


@pytest.mark.slow  # waits out a real deadline
def test_a_trickled_body_ends_the_request_at_its_overall_deadline() -> None:
    """Headers, then one byte a second: each read succeeds, so only a total bound can end it."""
    with HostileServer("trickle", interval=0.5) as server:
        http = client(server.url, timeout=1.0, deadline=2.5)
        took, err = asyncio.run(_timed(http.request("GET", "/v1/predictions/abc", what="get prediction abc")))
    assert isinstance(err, TransportError)
    assert took < HANG, took
    assert "replicate: get prediction abc failed" in str(err)
    assert "did not arrive in full within 1s" in str(err) or "no complete answer within 2.5s" in str(err)
    # Five attempts were allowed; 1 s each fit at most three times into the 2.5 s deadline. (Each
    # attempt is cut at 1 s by the attempt's own timer, so at least two start before 2.5 s.)
    assert 2 <= server.requests <= 3, server.requests


def test_a_trickled_create_is_ambiguous_and_never_sent_twice() -> None:
    with HostileServer("trickle", interval=0.5) as server:
        http = client(server.url, timeout=1.0, deadline=10.0)
        took, err = asyncio.run(
            _timed(http.request("POST", "/v1/predictions", json={"input": {}}, what="create prediction"))
        )
        assert isinstance(err, TransportError) and err.ambiguous
        # Cut by the attempt's 1 s bound (the message), long before the request's 10 s deadline.
        assert "the answer did not arrive in full within 1s (headers came, then" in str(err)
        assert took < HANG, took
        assert server.requests == 1


@pytest.mark.slow  # waits out a real deadline
def test_a_black_hole_ends_the_request_at_its_deadline() -> None:
    with HostileServer("blackhole") as server:
        http = client(server.url, timeout=1.0, deadline=2.5)
        took, err = asyncio.run(_timed(http.request("GET", "/v1/predictions/abc", what="get prediction abc")))
    assert isinstance(err, TransportError)
    assert took < HANG, took
    assert "no answer within 1s" in str(err) or "no complete answer within 2.5s" in str(err)
    assert 2 <= server.requests <= 3, server.requests  # five allowed: the deadline ended it


@pytest.mark.slow  # waits out a real deadline
def test_a_refused_connection_is_retried_within_the_deadline_then_named() -> None:
    url = refused_url()
    backoffs: list[float] = []

    async def sleep(seconds: float) -> None:  # the real wait, recorded
        backoffs.append(seconds)
        await asyncio.sleep(seconds)

    http = client(url, timeout=1.0, deadline=2.0, attempts=50, sleep=sleep)
    took, err = asyncio.run(_timed(http.request("GET", "/v1/predictions/abc", what="get prediction abc")))
    assert isinstance(err, TransportError) and not err.ambiguous
    assert "could not connect" in str(err)
    assert url in (err.hint or "")
    assert took < HANG, took
    # Refusals are retried, and the deadline (not the 50 attempts allowed) stops them: the
    # backoffs asked for fit in the 2 s. (On a busy machine the last backoff may end past the
    # deadline: then no attempt follows it, and the message still names the refusal.)
    assert http.stats["requests"] >= 2
    assert http.stats["requests"] < 50
    assert len(backoffs) in (http.stats["requests"] - 1, http.stats["requests"])
    assert sum(backoffs) < 2.0, backoffs


@pytest.mark.slow  # waits out a real deadline
def test_a_backoff_that_ends_past_the_deadline_still_names_the_last_failure() -> None:
    """On a busy machine a backoff may end later than asked, past the deadline: the error then
    says both that time ran out and what kept failing (the refusal), with the address to check."""
    url = refused_url()

    async def late_sleep(seconds: float) -> None:  # a scheduler that wakes us 1 s late, every time
        await asyncio.sleep(seconds + 1.0)

    http = client(url, timeout=1.0, deadline=2.0, attempts=50, sleep=late_sleep)
    _, err = asyncio.run(_timed(http.request("GET", "/v1/predictions/abc", what="get prediction abc")))
    assert isinstance(err, TransportError) and not err.ambiguous
    assert "no complete answer within 2s after 2 attempts" in str(err), err
    assert "; last: could not connect" in str(err), err
    assert url in (err.hint or "")


@pytest.mark.slow  # waits out a real deadline
def test_the_command_deadline_cuts_a_request_in_flight_and_names_it() -> None:
    with HostileServer("trickle", interval=0.5) as server:
        http = client(server.url, timeout=30.0, deadline=120.0)

        async def main() -> tuple[float, BaseException | None]:
            with command_deadline(time.monotonic() + 1.5, "apply --timeout 1.5s"):
                return await _timed(http.request("GET", "/v1/predictions/abc", what="get prediction abc"))

        took, err = asyncio.run(main())
    assert isinstance(err, TransportError)
    # The message names the command's bound; the request's own (120 s, 30 s per attempt) are far.
    assert took < HANG, took
    assert "stopped at the deadline of apply --timeout 1.5s" in str(err)
    assert "replicate is not answering" in (err.hint or "")


def test_a_request_after_the_command_deadline_sends_nothing() -> None:
    with HostileServer("trickle") as server:
        http = client(server.url)

        async def main() -> BaseException | None:
            with command_deadline(time.monotonic() - 1, "plan's refresh bound (2s)"):
                return (await _timed(http.request("POST", "/v1/predictions", json={}, what="create prediction")))[1]

        err = asyncio.run(main())
        assert isinstance(err, TransportError) and not err.ambiguous  # nothing left this machine
        assert server.requests == 0


# --- body caps and logs ---------------------------------------------------------------------


def _prediction_with_logs(logs: str) -> dict[str, Any]:
    body = fixture("replicate/prediction_get_succeeded.json")
    body["logs"] = logs
    body["id"] = "p1"  # served as /v1/predictions/p1: a GET answered for another id is refused
    return body


@respx.mock
def test_a_huge_log_is_truncated_with_a_marker_and_never_held_whole() -> None:
    lines = "".join(f"step {i}: loss=0.{i:06d} \"quoted\" é\n" for i in range(200_000))  # ~7 MB
    payload = json.dumps(_prediction_with_logs(lines)).encode()
    route = respx.get(f"{REPLICATE}/v1/predictions/p1").mock(
        return_value=httpx.Response(200, content=payload, headers={"content-type": "application/json"}))
    http = client(REPLICATE, max_body_bytes=1_000_000, max_log_bytes=100_000)
    provider = ReplicateProvider(http)
    text = asyncio.run(provider.logs("prediction", "p1"))
    assert route.call_count == 1
    assert text.startswith(LOG_TRUNCATED_PREFIX)
    first, rest = text.split("\n", 1)
    assert "bytes were not kept" in first
    assert 50_000 < len(rest.encode()) < 100_000  # the kept bytes are counted JSON-escaped
    assert lines.endswith(rest)  # the end of the log, intact (escapes and UTF-8 included)
    assert rest.startswith("step ")  # from the start of a line
    # A status poll keeps only a little of it, and the job itself parses as usual.
    job = asyncio.run(provider.get("prediction", "p1"))
    assert job.status == "succeeded"


@respx.mock
def test_an_oversized_answer_that_is_not_a_log_is_a_protocol_error() -> None:
    page = fixture("replicate/predictions_list_page.json")
    page["results"] = page["results"] * 2000
    respx.get(f"{REPLICATE}/v1/predictions").mock(
        return_value=httpx.Response(200, json=page))
    http = client(REPLICATE, max_body_bytes=200_000)
    with pytest.raises(ProtocolError) as info:
        asyncio.run(http.request_json("GET", "/v1/predictions", what="list predictions"))
    assert "larger than 200,000 bytes" in str(info.value)
    assert "providers.replicate.max_body_bytes" in (info.value.hint or "")


@respx.mock
def test_a_small_log_is_passed_through_unchanged() -> None:
    payload = _prediction_with_logs("hello\nworld\n")
    respx.get(f"{REPLICATE}/v1/predictions/p1").mock(return_value=httpx.Response(200, json=payload))
    http = client(REPLICATE)
    assert asyncio.run(ReplicateProvider(http).logs("prediction", "p1")) == "hello\nworld\n"


_texts = st.text(alphabet=st.sampled_from(list('ab"\\\n/é€😀 \t{}[],:') + ["\ud83d"]), max_size=300)
_docs = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["logs", "log", "logsx", "id", "input", 'lo"gs']), inner, max_size=4),
    ),
    max_leaves=12,
)


def _trim(raw: bytes, keep: int, cuts: list[int]) -> bytes:
    trimmer = LogTrimmer(keep)
    out, last = b"", 0
    for cut in sorted(set(c % (len(raw) + 1) for c in cuts)) + [len(raw)]:
        out += trimmer.feed(raw[last:cut])
        last = cut
    return out + trimmer.finish()


def _logs_of(doc: Any) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "logs" and isinstance(value, str):
                found.append(value)
            else:
                found += _logs_of(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _logs_of(value)
    return found


@settings(max_examples=300, deadline=None)
@given(doc=_docs, keep=st.integers(0, 40), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       ascii_only=st.booleans())
def test_the_trimmer_keeps_json_valid_and_only_shortens_logs(doc: Any, keep: int, cuts: list[int],
                                                             ascii_only: bool) -> None:
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # a lone surrogate written raw is not JSON a server sends
    out = _trim(raw, keep, cuts)
    trimmed = json.loads(out)
    before, after = _logs_of(doc), _logs_of(trimmed)
    assert len(before) == len(after)
    for original, kept in zip(before, after, strict=True):
        if kept.startswith(LOG_TRUNCATED_PREFIX):
            tail = kept.split("]\n", 1)[1]
            assert original.endswith(tail) or len(tail) <= 1
            # The cap holds whatever the chunking: never more than `keep` bytes of the log
            # (+5 for an escape that the cut may not split).
            assert len(json.dumps(tail, ensure_ascii=ascii_only)) - 2 <= keep + 5
        else:
            assert kept == original
    if not before:
        assert trimmed == doc


def test_the_bounds_are_read_from_jobrunner_yaml_and_checked(tmp_path: Any) -> None:
    from types import SimpleNamespace

    from jobrunner.errors import ConfigError
    from jobrunner.providers.registry import get_provider
    from jobrunner.providers.replicate import ReplicateProvider

    env = {"REPLICATE_API_TOKEN": TOKEN}
    config = SimpleNamespace(providers={"replicate": {"deadline": 7, "max_body_bytes": 1000, "max_log_bytes": 100,
                                                      "unreachable_after": 9}})
    configured = get_provider("replicate", config, tmp_path, env=env)
    assert isinstance(configured, ReplicateProvider)
    http = configured.http
    assert (http.deadline, http.max_body_bytes, http.max_log_bytes, http.unreachable_after) == (7.0, 1000, 100, 9.0)
    plain = get_provider("replicate", SimpleNamespace(providers={}), tmp_path, env=env)
    assert isinstance(plain, ReplicateProvider)
    defaults = plain.http
    assert (defaults.deadline, defaults.max_body_bytes, defaults.max_log_bytes) == (
        120.0,
        32 * 1024 * 1024,
        1024 * 1024,
    )
    for key, bad in [("deadline", 0), ("max_body_bytes", 1.5), ("unreachable_after", "5m")]:
        with pytest.raises(ConfigError, match=f"providers.replicate.{key} must be a positive"):
            get_provider("replicate", SimpleNamespace(providers={"replicate": {key: bad}}), tmp_path, env=env)


def test_an_upload_may_take_longer_than_the_request_deadline() -> None:
    from jobrunner.providers.http import upload_seconds

    assert upload_seconds(10) == 300.0
    assert upload_seconds(1024 * 1024 * 1024) == 1024.0


def test_the_trimmer_keeps_no_more_than_its_cap_whatever_the_chunk_sizes() -> None:
    # A big chunk followed by small ones used to keep the big one whole: up to twice the cap,
    # depending on how the network happened to split the body.
    log = "".join(f"step {i}/10000\n" for i in range(1, 10_001))
    raw = json.dumps({"id": "x", "logs": log}).encode()
    # Chunk sizes counted back from the end of the body: what the trimmer holds last decides.
    for sizes in ((19_000, 500), (15_000, 3_000, 2_000), (1, 7_000, 13_000, 100)):
        trimmer, out, at = LogTrimmer(20_000), b"", 0
        ends = [len(raw) - sum(sizes[i:]) for i in range(len(sizes))]
        for end in ends:
            out += trimmer.feed(raw[at:end])
            at = end
        out += trimmer.feed(raw[at:]) + trimmer.finish()
        kept = json.loads(out)["logs"]
        assert kept.startswith(LOG_TRUNCATED_PREFIX), sizes
        tail = kept.split("]\n", 1)[1]
        assert log.endswith(tail) and len(tail) <= 20_000, (sizes, len(tail))
