"""JSON requests without httpx's objects (`jobrunner.providers.jsonwire`) against httpx, on real sockets.

`HttpClient` sends JSON creates and GETs over the lean transport without building httpx's Request
and Response. Two things must hold for that to be a refactor and not a new client:

* the bytes on the wire are the ones httpx would have written (same headers, same order, same
  body encoding), whatever the request (a create with extra headers, a non-ASCII body, a list page
  with params, a `next` URL, no credential, another credential header);
* what `HttpClient` makes of each answer is the same: the JSON, or the same error class, message,
  provider detail and "maybe sent" flag, with the same number of requests sent. Each hostile
  situation (a connection dropped before or after the request was written, a trickled body,
  chunked answers, 4xx/5xx with provider detail, 429 with Retry-After, keep-alive close, a gzip
  body, a cookie, an oversized or too slow body) is played by a raw loopback server against
  `HttpClient` on the JSON path and on httpx's own transport (`JOBRUNNER_HTTP_TRANSPORT=httpx`).
"""
from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from jobrunner.errors import ProviderError
from jobrunner.providers.http import HttpClient, RetryPolicy, _httpx_transport
from jobrunner.providers.wire import LeanTransport
from tests.hostile_http import read_request
from tests.providers.conftest import TOKEN
from tests.providers.test_wire import BODY, Server, answer, second_unanswered

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Call = tuple[str, str, dict[str, Any]]
CREATE: Call = ("POST", "/v1/predictions", {"json": {"version": "v1", "input": {"prompt": "hi"}}, "idempotent": False})
POLL: Call = ("GET", "/v1/predictions/p1", {})
MODES = ("jsonwire", "httpx")


def _client(url: str, mode: str, **kw: Any) -> HttpClient:
    kw.setdefault("token", TOKEN)
    return HttpClient("replicate", url, policy=RetryPolicy(max_attempts=3, backoff_base=0.01),
                      timeout=httpx.Timeout(kw.pop("read", 5.0)), deadline=10.0,
                      transport=_httpx_transport() if mode == "httpx" else None, **kw)


class Recorder:
    """A keep-alive server that records every request's bytes and answers `reply(request)`."""

    def __init__(self, reply: Callable[[bytes], bytes] = lambda _: answer()) -> None:
        self.seen: list[bytes] = []
        self.reply = reply

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            self.seen.append(request)
            writer.write(self.reply(request))


async def _outcome(http: HttpClient, call: Call) -> Any:
    method, path, kw = call
    try:
        return await http.request_json(method, path, **kw)
    except ProviderError as err:
        message = re.sub(r"127\.0\.0\.1:\d+", "HOST", err.message)
        message = re.sub(r"\(\[Errno \d+\][^)]*\)", "(an OS error)", message)  # reset or broken pipe: timing
        return [type(err).__name__, err.ambiguous, err.status, err.detail, message]


def outcomes(handler: Handler, calls: list[Call], mode: str, **kw: Any) -> tuple[list[Any], int, dict[str, int]]:
    """What each call ended in, the connections the server saw, and the client's counters."""
    async def main() -> tuple[list[Any], int, dict[str, int]]:
        async with Server(handler) as server:
            http = _client(server.url, mode, **kw)
            sends = 0
            client = await http._ensure()
            real_send = client.send

            async def counted(*a: Any, **k: Any) -> Any:
                nonlocal sends
                sends += 1
                return await real_send(*a, **k)

            client.send = counted  # type: ignore[method-assign]
            got = [await _outcome(http, call) for call in calls]
            if mode == "jsonwire":
                assert isinstance(client._transport, LeanTransport)
            stats = {k: v for k, v in http.stats.items() if k in ("requests", "retries", "errors", "throttled")}
            stats["httpx_sends"] = sends
            await http.aclose()
            return got, server.connections, stats

    return asyncio.run(main())


def both(handler: Handler, calls: list[Call], *, exact: bool = True,
         **kw: Any) -> tuple[list[Any], int, dict[str, int]]:
    """The outcome the JSON path and httpx's transport agree on (the test fails if they differ).
    Not `exact`: errors compare by class, "maybe sent" and status only (a race decides the rest)."""
    lean, stock = (outcomes(handler, calls, mode, **kw) for mode in MODES)
    if exact:
        assert lean[:2] == stock[:2], (lean, stock)
    else:
        def rough(got: list[Any]) -> list[Any]:
            return [g[:3] if isinstance(g, list) else g for g in got]
        assert (rough(lean[0]), lean[1]) == (rough(stock[0]), stock[1]), (lean, stock)
    lean_stats, stock_stats = dict(lean[2]), dict(stock[2])
    lean_stats.pop("httpx_sends"), stock_stats.pop("httpx_sends")
    assert lean_stats == stock_stats, (lean, stock)
    return lean


# --- the bytes -------------------------------------------------------------------------------


def _written(mode: str, calls: list[Call], **kw: Any) -> list[bytes]:
    recorder = Recorder()

    async def main() -> None:
        async with Server(recorder) as server:
            http = HttpClient("replicate", server.url, **kw)
            client = await http._ensure()
            if mode == "httpx-objects":  # the same lean transport, reached through httpx's Request
                http._jsonwire = None
            else:
                def no_httpx(*a: Any, **k: Any) -> Any:
                    raise AssertionError("went through httpx's send")
                client.send = no_httpx  # type: ignore[method-assign]
            lean = client._transport
            assert isinstance(lean, LeanTransport)
            for method, path, extra in calls:
                await http.request(method, path, **extra)
            assert lean.stats["fallback"] == 0
            await http.aclose()

    asyncio.run(main())
    return [re.sub(rb"127\.0\.0\.1:\d+", b"HOST", raw) for raw in recorder.seen]


def test_the_bytes_written_are_the_ones_httpx_writes() -> None:
    calls: list[Call] = [
        ("POST", "/v1/predictions", {"json": {"version": "v1", "input": {"prompt": "héllo ✓", "n": 1.5}},
                                     "headers": {"Prefer": "wait=1", "Cancel-After": "5m"}, "idempotent": False}),
        ("POST", "/v1/predictions", {"json": {"input": {}}}),
        ("PATCH", "/v1/deployments/me/d", {"json": {"min_instances": 0}, "idempotent": True}),
        ("GET", "/v1/predictions/p1", {}),
        ("GET", "/v1/predictions", {"params": {"created_after": "2026-12-03T00:00:00Z", "x": "a b&c"}}),
        ("GET", "/v1/predictions?cursor=abc%3D%3D", {}),
    ]
    for kw in ({"token": TOKEN}, {"token": None},
               {"token": "em_KEY_0123456789abcdef", "auth_header": "X-API-Key", "auth_scheme": None}):
        lean, objects = _written("jsonwire", calls, **kw), _written("httpx-objects", calls, **kw)
        assert lean == objects, kw
    assert b"\xc3\xa9llo \xe2\x9c\x93" in lean[0]  # UTF-8, not \u escapes, as httpx encodes JSON


def test_a_create_and_a_poll_go_without_httpx_objects_and_reuse_one_connection() -> None:
    got, connections, stats = outcomes(Recorder(), [CREATE, POLL, CREATE], "jsonwire")
    assert got == [{"id": "p1", "status": "succeeded", "output": "hello"}] * 3
    assert connections == 1 and stats["httpx_sends"] == 0 and stats["requests"] == 3


def test_unusual_requests_still_go_through_httpx() -> None:
    weird: list[Call] = [
        ("POST", "/v1/predictions/p1/cancel", {"idempotent": True}),  # no body: Content-Length 0 by httpx's rules
        ("POST", "/v1/predictions", {"json": {}, "headers": {"Accept": "text/plain"}}),  # replaces a client header
        ("POST", "/v1/predictions", {"json": {}, "headers": {"X-Name": "café"}}),  # not ASCII: httpx's own error
    ]
    got, _, stats = outcomes(Recorder(), weird[:2], "jsonwire")
    assert got[0]["id"] == "p1" and got[1]["id"] == "p1" and stats["httpx_sends"] == 2
    with pytest.raises(UnicodeEncodeError):
        outcomes(Recorder(), weird[2:], "jsonwire")


# --- hostile servers: the same outcome either way ---------------------------------------------


def test_dropped_before_the_request_is_read_or_after_it_was() -> None:
    async def drop_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # the request meets a reset or a closed connection, as the race goes: either
        # way it may have been written, so a create is "maybe sent" on both paths (httpcore's rule)

    async def drop_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    for handler in (drop_at_once, drop_after_reading):
        got, _, stats = both(handler, [CREATE], exact=handler is drop_after_reading)
        assert got[0][:2] == ["TransportError", True] and stats["requests"] == 1  # maybe sent: never re-sent
        got, _, stats = both(handler, [POLL], exact=handler is drop_after_reading)
        assert got[0][:2] == ["TransportError", False] and stats["requests"] == 3  # a read is retried


def test_a_pooled_connection_dropped_as_the_create_arrives_is_maybe_sent() -> None:
    got, connections, stats = both(second_unanswered, [POLL, CREATE])
    assert got[0]["id"] == "p1" and got[1][:2] == ["TransportError", True] and connections == 1


def test_trickled_chunked_and_closing_answers_arrive_whole() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
               + f"{len(BODY) - 9:x}".encode() + b"\r\n" + BODY[:-9] + b"\r\n9;x=y\r\n" + BODY[-9:] + b"\r\n0\r\n\r\n")

    def dribbling(raw: bytes, step: int) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await read_request(reader)
                for i in range(0, len(raw), step):
                    writer.write(raw[i:i + step])
                    await writer.drain()
                    await asyncio.sleep(0.002)
        return handler

    closing = answer(extra="connection: close\r\n")

    async def close_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(closing)
        await writer.drain()
        writer.close()

    expected = {"id": "p1", "status": "succeeded", "output": "hello"}
    assert both(dribbling(answer(), 5), [CREATE, POLL])[:2] == ([expected] * 2, 1)
    assert both(dribbling(chunked, 7), [CREATE, POLL])[:2] == ([expected] * 2, 1)
    assert both(close_each, [CREATE, POLL, CREATE])[:2] == ([expected] * 3, 3)  # keep-alive close: a new one each


def test_error_answers_keep_the_provider_detail_and_hide_the_token() -> None:
    problem = (b'{"title": "Invalid version", "detail": "version v1 not found for ' + TOKEN.encode()
               + b'", "status": 422}')
    answers = [
        answer(problem, status="422 Unprocessable Entity"),
        answer(b'{"detail": "Unauthenticated"}', status="401 Unauthorized"),
        answer(b"<html><body><h1>502 Bad Gateway</h1></body></html>", status="502 Bad Gateway",
               extra="content-type: text/html\r\n"),
        answer(b'{"id": "p1"', status="200 OK"),  # truncated JSON
        answer(b"", status="200 OK"),
    ]

    for raw in answers:
        got, _, stats = both(Recorder(lambda _, raw=raw: raw), [CREATE])  # type: ignore[misc]
        assert isinstance(got[0], list) and TOKEN not in str(got[0]) and stats["requests"] == 1
    got, _, _ = both(Recorder(lambda _: answers[0]), [CREATE])
    assert got[0][0] == "InvalidRequestError" and "Invalid version: version v1 not found" in got[0][3]
    got, _, _ = both(Recorder(lambda _: answers[2]), [CREATE])
    assert got[0][:3] == ["ServerError", True, 502]  # the create may exist: looked up, not re-sent
    got, _, stats = both(Recorder(lambda _: answers[2]), [POLL])
    assert got[0][:3] == ["ServerError", False, 502] and stats["requests"] == 3 and stats["retries"] == 2


def test_429_with_retry_after_is_retried_and_learned_from() -> None:
    calls = [0]

    def throttle_once(_: bytes) -> bytes:
        calls[0] += 1
        if calls[0] % 2:
            return answer(b'{"detail": "slow down"}', status="429 Too Many Requests", extra="retry-after: 0.01\r\n")
        return answer(extra="ratelimit-remaining: 5\r\nratelimit-reset: 1\r\n")

    got, connections, stats = both(Recorder(throttle_once), [CREATE])
    assert got[0]["id"] == "p1" and stats == {"requests": 2, "retries": 1, "throttled": 1, "httpx_sends": 0}


def test_gzip_bodies_are_decoded_and_cookies_kept() -> None:
    zipped = gzip.compress(BODY)

    def reply(request: bytes) -> bytes:
        if b"/v1/predictions/p1" in request.split(b"\r\n", 1)[0]:
            cookie = b"cookie: session=abc" in request.lower()
            return answer(extra=f"x-had-cookie: {cookie}\r\n")
        return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                b"set-cookie: session=abc; Path=/\r\ncontent-length: %d\r\n\r\n" % len(zipped)) + zipped

    recorder = Recorder(reply)
    got, _, stats = both(recorder, [CREATE, POLL])
    assert got[0] == got[1] == {"id": "p1", "status": "succeeded", "output": "hello"}
    assert [b"session=abc" in seen for seen in recorder.seen[-2:]] == [False, True]  # the cookie went back


def test_an_oversized_or_too_slow_body_is_cut() -> None:
    big = b'{"id": "p1", "output": "' + b"x" * 100_000 + b'"}'

    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer()[:-20])
        await writer.drain()
        await asyncio.sleep(2)

    got, _, _ = both(Recorder(lambda _: answer(big)), [POLL], max_body_bytes=64 * 1024)
    assert got[0][0] == "ProtocolError" and "larger than 65,536 bytes" in got[0][4]
    got, _, stats = both(slow_body, [CREATE], read=0.3)
    assert got[0][:2] == ["TransportError", True] and "headers came, then" in got[0][4] and stats["requests"] == 1
