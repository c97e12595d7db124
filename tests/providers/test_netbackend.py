"""The asyncio network backend under httpx (`jobrunner.providers.netbackend`), on real sockets.

httpx's own transport runs on it (the lean transport's fallback, and every request with
`JOBRUNNER_HTTP_TRANSPORT=httpx`; the lean transport itself is tested in `test_wire.py`, where
each failure is played through both). What a create depends on is tested with the default client
against loopback servers that misbehave on purpose (a server that closes an idle
keep-alive connection, one that reads a request and hangs up, one that reads slowly), and against
the real local platform. The deadline cases (trickled bodies, black holes, refused ports) are in
`test_deadlines.py` and run on the same backend. Also here: answers shorter than what the log
trimmer keeps are passed through without being scanned, byte for byte.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.errors import TransportError
from jobrunner.providers.adapters.local_builtins import ECHO_VERSION
from jobrunner.providers.bodies import LogTrimmer, read_capped
from jobrunner.providers.http import HttpClient, RetryPolicy
from jobrunner.providers.netbackend import AsyncioBackend, AsyncioStream
from jobrunner.providers.replicate import ReplicateProvider
from tests.hostile_http import read_request
from tests.platform_fixture import serve_platform
from tests.providers.conftest import TOKEN

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ANSWER = b'{"id": "p1", "status": "starting"}'


def _client(url: str, **kw: Any) -> HttpClient:
    return HttpClient("replicate", url, token=TOKEN, policy=RetryPolicy(max_attempts=3, backoff_base=0.01),
                      timeout=httpx.Timeout(5.0), deadline=10.0, **kw)


def _answer(body: bytes = ANSWER, *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


async def _serve(handler: Handler) -> tuple[asyncio.base_events.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_the_httpx_transport_sends_through_the_asyncio_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx's own transport (JOBRUNNER_HTTP_TRANSPORT=httpx, and the lean transport's fallback:
    # see test_wire.py) runs on this backend.
    monkeypatch.setenv("JOBRUNNER_HTTP_TRANSPORT", "httpx")

    async def main() -> None:
        http = _client("http://127.0.0.1:9")
        client = await http._ensure()
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, AsyncioBackend)
        await http.aclose()
        # An explicit transport (what respx and tests pass) is used as given.
        given_transport = httpx.AsyncHTTPTransport()
        other = _client("http://127.0.0.1:9", transport=given_transport)
        assert (await other._ensure())._transport is given_transport
        await other.aclose()

    asyncio.run(main())


def test_a_keep_alive_connection_the_server_closed_is_not_reused_for_a_create() -> None:
    # The server answers one request per connection and then hangs up (no `connection: close`):
    # the next create must go out on a new connection, not into the dead one (which would make
    # it ambiguous: "the connection was dropped" after sending).
    connections: list[int] = []

    async def one_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(_answer())
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, url = await _serve(one_and_close)
        http = _client(url)
        try:
            for _ in range(3):
                body = await http.request_json("POST", "/v1/predictions", json={"input": {}})
                assert body["id"] == "p1"
                await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        finally:
            await http.aclose()
            server.close()
        assert len(connections) == 3
        assert http.stats["requests"] == 3 and http.stats["errors"] == 0

    asyncio.run(main())


def test_a_create_the_server_hung_up_on_is_ambiguous_and_not_sent_again() -> None:
    seen: list[bytes] = []

    async def read_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.close()

    async def main() -> None:
        server, url = await _serve(read_and_hang_up)
        http = _client(url)
        try:
            with pytest.raises(TransportError) as caught:
                await http.request_json("POST", "/v1/predictions", json={"input": {"prompt": "x"}})
        finally:
            await http.aclose()
            server.close()
        assert caught.value.ambiguous
        assert "dropped" in caught.value.message or "failed while" in caught.value.message
        assert len(seen) == 1  # never re-sent blindly

    asyncio.run(main())


def test_a_get_the_server_hung_up_on_is_retried() -> None:
    calls: list[int] = []

    async def hang_up_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        calls.append(1)
        if len(calls) > 1:
            writer.write(_answer())
            await writer.drain()
        writer.close()

    async def main() -> None:
        server, url = await _serve(hang_up_once)
        http = _client(url)
        try:
            body = await http.request_json("GET", "/v1/predictions/p1")
        finally:
            await http.aclose()
            server.close()
        assert body["id"] == "p1" and len(calls) == 2 and http.stats["retries"] == 1

    asyncio.run(main())


def test_a_big_body_reaches_a_slow_reader_whole() -> None:
    # 8 MB is far beyond the socket buffers: the transport pauses writing and the write waits.
    payload = {"input": {"blob": "x" * (8 * 1024 * 1024)}}
    received: list[int] = []

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        got = 0
        while got < length:
            got += len(await reader.read(65536))
            await asyncio.sleep(0.001)
        received.append(got)
        writer.write(_answer(close=True))
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, url = await _serve(slow_reader)
        http = _client(url)
        try:
            await http.request_json("POST", "/v1/files", json=payload, idempotent=True)
        finally:
            await http.aclose()
            server.close()
        assert len(received) == 1 and received[0] > 8 * 1024 * 1024  # the whole declared body arrived

    asyncio.run(main())


def test_a_read_timeout_of_one_attempt_is_retried_for_a_get() -> None:
    calls: list[int] = []

    async def silent_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(2.0)  # longer than the read timeout
        writer.write(_answer(close=True))
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, url = await _serve(silent_once)
        http = HttpClient("replicate", url, token=TOKEN, policy=RetryPolicy(max_attempts=3, backoff_base=0.01),
                          timeout=httpx.Timeout(0.3), deadline=10.0)
        try:
            body = await http.request_json("GET", "/v1/predictions/p1")
        finally:
            await http.aclose()
            server.close()
        assert body["id"] == "p1" and http.stats["retries"] == 1

    asyncio.run(main())


def test_creates_and_gets_against_the_real_local_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRUNNER_HTTP_TRANSPORT", "httpx")  # the lean transport's own: test_wire.py
    with serve_platform(tmp_path / "platform", TOKEN) as live:
        provider = ReplicateProvider(_client(live.url))

        async def main() -> list[dict[str, Any]]:
            try:
                client = await provider.http._ensure()
                created = await asyncio.gather(*(provider.http.request_json(
                    "POST", "/v1/predictions", json={"version": ECHO_VERSION, "input": {"prompt": f"p{i}"}})
                    for i in range(20)))
                got = [await provider.http.request_json("GET", f"/v1/predictions/{c['id']}") for c in created]
                streams = [c._connection._network_stream
                           for c in client._transport._pool.connections]  # type: ignore[attr-defined]
                assert streams and all(isinstance(s, AsyncioStream) for s in streams)
                return got
            finally:
                await provider.http.aclose()

        got = asyncio.run(main())
    assert [g["input"]["prompt"] for g in got] == [f"p{i}" for i in range(20)]
    assert provider.http.stats["requests"] == 40 and provider.http.stats["errors"] == 0


# --- answers shorter than the log cap are not scanned ----------------------------------------


async def _chunks(raw: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    last = 0
    for cut in sorted(set(c % (len(raw) + 1) for c in cuts)) + [len(raw)]:
        yield raw[last:cut]
        last = cut


def _through_trimmer(raw: bytes, keep: int, cuts: list[int]) -> bytes:
    trimmer, out, last = LogTrimmer(keep), b"", 0
    for cut in sorted(set(c % (len(raw) + 1) for c in cuts)) + [len(raw)]:
        out += trimmer.feed(raw[last:cut])
        last = cut
    return out + trimmer.finish()


_docs = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(alphabet='ab"\\\n{}é', max_size=60)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["logs", "id", "output"]), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(doc=_docs, keep=st.integers(0, 300), cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_read_capped_equals_the_trimmer_or_the_body_itself(doc: Any, keep: int, cuts: list[int]) -> None:
    raw = json.dumps(doc, ensure_ascii=False).encode()
    out = asyncio.run(read_capped(_chunks(raw, cuts), max_bytes=10**6, trimmer=LogTrimmer(keep)))
    if len(raw) <= keep:
        assert out == raw  # nothing to trim: the bytes as they came
        return
    # Longer: the scanner ran over the same bytes, the held ones as its first chunk.
    ends = sorted(set(c % (len(raw) + 1) for c in cuts)) + [len(raw)]
    first = next(end for end in ends if end > keep)
    assert out == _through_trimmer(raw, keep, [first] + [end for end in ends if end > first])
    json.loads(out)


def test_a_cookie_an_answer_sets_is_still_kept_and_others_skip_the_jar() -> None:
    from jobrunner.providers.http import _SetCookiesOnly

    async def main() -> None:
        http = _client("https://api.replicate.test")
        client = await http._ensure()
        assert isinstance(client.cookies, _SetCookiesOnly)
        with respx.mock:
            respx.get("https://api.replicate.test/v1/a").respond(200, json={"id": "a"})
            respx.get("https://api.replicate.test/v1/b").respond(
                200, json={"id": "b"}, headers={"Set-Cookie": "session=s1; Path=/"})
            await http.request_json("GET", "/v1/a")
            assert len(client.cookies.jar) == 0
            await http.request_json("GET", "/v1/b")
            assert client.cookies.get("session") == "s1"
        await http.aclose()

    asyncio.run(main())
