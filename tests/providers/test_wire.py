"""The lean HTTP/1.1 transport (`jobrunner.providers.wire`) against httpcore, on real sockets.

Each situation of the table in wire.py's docstring is played by a raw loopback socket server
(asyncio streams, bytes written by hand) and sent through three transports: the lean one,
httpx's transport on jobrunner's asyncio socket backend (what jobrunner used before, and the
lean transport's fallback), and httpx's stock transport (httpcore on anyio). The outcome (the
answer, or the httpx exception class) must be the same for all three, and the expected one: which
failures count as "not sent" decides whether a create may be sent again. Then what `HttpClient`
makes of them (a create the server hung up on is ambiguous and sent once), the body cap, the
pool's limits, TLS, respx interception and the escape hatch.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import respx

from jobrunner.errors import ProtocolError, TransportError
from jobrunner.providers.http import DEFAULT_LIMITS, HttpClient, RetryPolicy, _default_transport, _ssl_context
from jobrunner.providers.netbackend import AsyncioBackend
from jobrunner.providers.wire import ESCAPE_VAR, LeanTransport, intercepted
from tests.hostile_http import read_request, refused_url
from tests.providers.conftest import TOKEN

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
KINDS = ("lean", "netbackend", "anyio")
BODY = b'{"id": "p1", "status": "succeeded", "output": "hello"}'


def transport(kind: str, *, limits: httpx.Limits = DEFAULT_LIMITS,
              ctx: ssl.SSLContext | None = None) -> httpx.AsyncBaseTransport:
    ctx = ctx or _ssl_context()
    stock = httpx.AsyncHTTPTransport(verify=ctx, limits=limits)
    if kind == "lean":
        return LeanTransport(fallback=stock, ssl_context=ctx, limits=limits)
    if kind == "netbackend":
        stock._pool = httpcore.AsyncConnectionPool(
            ssl_context=ctx, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=AsyncioBackend())
    return stock


def answer(body: bytes = BODY, *, extra: str = "", status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved keep-alive server: one answer per request, the connection kept open."""
    while True:
        await read_request(reader)
        writer.write(answer())


class Server:
    """A loopback server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler, self.connections, self._ssl = handler, 0, ssl_context
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Server:
        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self.handler(reader, writer)

        self.server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=self._ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def outcomes(kind: str, handler: Handler, requests: list[tuple[str, str]], *, read: float = 5.0,
                   pause: float = 0.0) -> tuple[list[str], int]:
    """What each request ended in ("200 <body>" or the exception class), and the connections made."""
    results: list[str] = []
    async with Server(handler) as server, httpx.AsyncClient(
            transport=transport(kind), timeout=httpx.Timeout(read, connect=5.0)) as client:
        for method, path in requests:
            try:
                response = await client.request(method, server.url + path, content=b'{"input": {}}')
                results.append(f"{response.status_code} {response.content.decode()}")
            except httpx.TransportError as exc:
                results.append(type(exc).__name__)
            await asyncio.sleep(pause)
    return results, server.connections


def all_kinds(handler: Handler, requests: list[tuple[str, str]], **kw: Any) -> tuple[list[str], int]:
    """The outcome every transport agrees on (the test fails if any differs)."""
    seen = {kind: asyncio.run(outcomes(kind, handler, requests, **kw)) for kind in KINDS}
    assert seen["lean"] == seen["netbackend"] == seen["anyio"], seen
    return seen["lean"]


POST = ("POST", "/v1/predictions")
GET = ("GET", "/v1/predictions/p1")


# --- the situation table ----------------------------------------------------------------------


def test_refused() -> None:
    async def main(kind: str) -> str:
        async with httpx.AsyncClient(transport=transport(kind)) as client:
            try:
                await client.post(refused_url() + "/v1/predictions", content=b"{}")
            except httpx.TransportError as exc:
                return type(exc).__name__
        return "answered"

    assert {kind: asyncio.run(main(kind)) for kind in KINDS} == dict.fromkeys(KINDS, "ConnectError")


def test_a_keep_alive_exchange_uses_one_connection() -> None:
    results, connections = all_kinds(keep_alive, [POST, GET, POST])
    assert results == [f"200 {BODY.decode()}"] * 3 and connections == 1


def test_close_before_answering_is_a_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    assert all_kinds(hang_up, [POST]) == (["RemoteProtocolError"], 1)


def test_a_reset_before_answering_is_a_read_error() -> None:
    async def reset_hard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import socket
        import struct

        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends an RST
        writer.transport.abort()

    results, _ = all_kinds(reset_hard, [POST])
    assert results == ["ReadError"]


def test_close_in_the_middle_of_the_body_or_headers() -> None:
    async def half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer()[:-10])
        await writer.drain()
        writer.close()

    async def half_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
        await writer.drain()
        writer.close()

    assert all_kinds(half_body, [POST]) == (["RemoteProtocolError"], 1)
    assert all_kinds(half_head, [POST]) == (["RemoteProtocolError"], 1)


def test_a_trickled_body_arrives_whole_and_a_slow_answer_times_out() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(0, len(answer()), 7):
            writer.write(answer()[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0.01)

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(1.0)
        writer.write(answer())

    assert all_kinds(trickle, [POST], read=2.0) == ([f"200 {BODY.decode()}"], 1)
    assert all_kinds(slow, [POST], read=0.2) == (["ReadTimeout"], 1)


def test_chunked_bodies_with_extensions_and_trailers_and_cut_ones() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5;ext=1\r\n" + BODY[:5] + b"\r\n" + f"{len(BODY) - 5:x}".encode() + b"\r\n" + BODY[5:]
               + b"\r\n0\r\nx-trailer: yes\r\n\r\n")

    async def in_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            for i in range(0, len(chunked), 11):
                writer.write(chunked[i:i + 11])
                await writer.drain()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked[:-20])
        await writer.drain()
        writer.close()

    assert all_kinds(in_pieces, [POST, GET]) == ([f"200 {BODY.decode()}"] * 2, 1)
    assert all_kinds(cut, [POST]) == (["RemoteProtocolError"], 1)


def test_a_pooled_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer())
        await writer.drain()
        writer.close()  # no `connection: close`: the client learns it from the FIN

    assert all_kinds(one_per_connection, [POST, POST, POST], pause=0.05) == ([f"200 {BODY.decode()}"] * 3, 3)


async def second_unanswered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers a connection's first request, then hangs up as its second one arrives."""
    await read_request(reader)
    writer.write(answer())
    await read_request(reader)
    writer.close()


def test_a_pooled_connection_closed_as_the_request_arrives_is_a_remote_protocol_error() -> None:
    results, connections = all_kinds(second_unanswered, [POST, POST])
    assert results == [f"200 {BODY.decode()}", "RemoteProtocolError"] and connections == 1


def test_connection_close_http_1_0_and_bodies_up_to_the_close() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(extra="connection: close\r\n"))

    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + BODY)
        await writer.drain()
        writer.close()

    assert all_kinds(closing, [POST, POST]) == ([f"200 {BODY.decode()}"] * 2, 2)
    assert all_kinds(old_server, [POST, POST]) == ([f"200 {BODY.decode()}"] * 2, 2)


def test_no_body_answers_and_informational_ones_keep_the_connection() -> None:
    async def varied(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        await read_request(reader)
        writer.write(answer(b"", status="404 Not Found"))

    assert all_kinds(varied, [POST, GET]) == (["204 ", "404 "], 1)


def test_malformed_answers_are_remote_protocol_errors() -> None:
    def serving(raw: bytes) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(raw)
            await writer.drain()
            writer.close()
        return handler

    for raw in (b"SPDY/9 what\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"):
        assert all_kinds(serving(raw), [POST]) == (["RemoteProtocolError"], 1), raw


# --- what HttpClient makes of it ---------------------------------------------------------------


def _client(url: str, **kw: Any) -> HttpClient:
    return HttpClient("replicate", url, token=TOKEN, policy=RetryPolicy(max_attempts=3, backoff_base=0.01),
                      timeout=httpx.Timeout(5.0), deadline=10.0, **kw)


def test_the_default_client_is_lean_and_the_escape_hatch_restores_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ESCAPE_VAR, raising=False)
    lean = _default_transport()
    assert isinstance(lean, LeanTransport) and isinstance(lean.fallback, httpx.AsyncHTTPTransport)
    monkeypatch.setenv(ESCAPE_VAR, "httpx")
    assert isinstance(_default_transport(), httpx.AsyncHTTPTransport)


def test_a_create_hung_up_on_is_ambiguous_sent_once_and_a_get_is_retried() -> None:
    seen: list[bytes] = []

    async def hang_up_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        if len(seen) > 1:
            writer.write(answer(extra="connection: close\r\n"))
            await writer.drain()
        writer.close()

    async def main() -> None:
        async with Server(hang_up_first) as server:
            http = _client(server.url)
            with pytest.raises(TransportError) as caught:
                await http.request_json("POST", "/v1/predictions", json={"input": {}})
            assert caught.value.ambiguous and len(seen) == 1
            assert (await http.request_json("GET", "/v1/predictions/p1"))["id"] == "p1"
            assert http.stats["retries"] == 0 and http._client is not None
            assert isinstance(http._client._transport, LeanTransport)
            await http.aclose()

    asyncio.run(main())


def test_a_refused_create_is_not_sent_and_is_retried() -> None:
    async def main() -> None:
        http = _client(refused_url())
        with pytest.raises(TransportError) as caught:
            await http.request_json("POST", "/v1/predictions", json={"input": {}})
        assert not caught.value.ambiguous and http.stats["retries"] == 2  # all 3 attempts: nothing was sent
        await http.aclose()

    asyncio.run(main())


def test_an_oversized_body_is_cut_at_the_cap_and_its_connection_not_reused() -> None:
    big = b'{"id": "p1", "output": "' + b"x" * 200_000 + b'"}'

    async def serve_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            writer.write(answer(big if b"/big" in request else BODY))

    async def main() -> None:
        async with Server(serve_big) as server:
            http = _client(server.url, max_body_bytes=64 * 1024)
            with pytest.raises(ProtocolError, match="larger than 65,536 bytes"):
                await http.request_json("GET", "/v1/big")
            assert (await http.request_json("GET", "/v1/small"))["id"] == "p1"
            await http.aclose()
            assert server.connections == 2  # the cut one was closed, not handed to the next request

    asyncio.run(main())


def test_the_pool_waits_for_a_slot_and_times_out_as_httpcore_does() -> None:
    async def main(kind: str) -> list[str]:
        gate = asyncio.Event()

        async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await read_request(reader)
                await gate.wait()
                writer.write(answer())

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with Server(held) as server, httpx.AsyncClient(
                transport=transport(kind, limits=limits), timeout=httpx.Timeout(5.0, pool=0.2)) as client:
            first = asyncio.ensure_future(client.get(server.url + "/a"))
            await asyncio.sleep(0.05)
            try:
                await client.get(server.url + "/b")
                second = "answered"
            except httpx.TransportError as exc:
                second = type(exc).__name__
            gate.set()
            waiting = asyncio.ensure_future(client.get(server.url + "/c"))  # waits for /a's slot, then goes
            return [second, str((await first).status_code), str((await waiting).status_code), str(server.connections)]

    assert {kind: asyncio.run(main(kind)) for kind in KINDS} == dict.fromkeys(KINDS, ["PoolTimeout", "200", "200", "1"])


def test_tls_with_a_trusted_and_an_untrusted_certificate(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)

    async def main(kind: str, ctx: ssl.SSLContext | None) -> str:
        async with Server(keep_alive, server_ctx) as server, httpx.AsyncClient(
                transport=transport(kind, ctx=ctx)) as client:
            try:
                got = [(await client.post(server.url + "/v1/predictions", content=b"{}")).json()["id"]
                       for _ in range(2)]
            except httpx.TransportError as exc:
                return type(exc).__name__
            return f"{got} over {server.connections}"

    for kind in KINDS:
        assert asyncio.run(main(kind, client_ctx)) == "['p1', 'p1'] over 1"
        assert asyncio.run(main(kind, None)) == "ConnectError"  # self-signed: the default context refuses it


TLS_FIXTURES = Path(__file__).parent / "fixtures" / "tls"  # a self-signed certificate for 127.0.0.1


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert_file, key_file = TLS_FIXTURES / "loopback-cert.pem", TLS_FIXTURES / "loopback-key.pem"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


# --- what goes to httpx's own transport ------------------------------------------------------


def test_respx_intercepts_even_a_client_built_before_it_started() -> None:
    async def main() -> None:
        http = _client("https://api.replicate.test")
        client = await http._ensure()
        lean = client._transport
        assert isinstance(lean, LeanTransport) and not intercepted()
        with respx.mock:
            assert intercepted()
            respx.get("https://api.replicate.test/v1/predictions/p1").respond(200, json={"id": "p1"})
            assert (await http.request_json("GET", "/v1/predictions/p1"))["id"] == "p1"
        assert not intercepted() and lean.stats["fallback"] == 1 and lean.stats["lean"] == 0
        await http.aclose()

    asyncio.run(main())


def test_uploads_and_header_bytes_h11_refuses_go_to_httpx() -> None:
    async def main() -> None:
        async with Server(keep_alive) as server:
            lean = transport("lean")
            assert isinstance(lean, LeanTransport)
            async with httpx.AsyncClient(transport=lean) as client:
                with tempfile.TemporaryFile() as fh:
                    fh.write(b"weights" * 1000)
                    fh.seek(0)
                    upload = await client.post(server.url + "/v1/files", files={"content": fh})
                assert upload.status_code == 200
                with pytest.raises(httpx.LocalProtocolError):
                    await client.get(server.url + "/v1/x", headers={"x-bad": "a\r\nInjected: yes"})
                assert (await client.get(server.url + "/v1/y")).status_code == 200
            assert lean.stats == {"lean": 1, "fallback": 2, "connections": 1}

    asyncio.run(main())


def test_a_connect_that_hangs_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def hang(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(30)

        monkeypatch.setattr(loop, "create_connection", hang)
        async with httpx.AsyncClient(transport=transport("lean"), timeout=httpx.Timeout(5.0, connect=0.1)) as c:
            try:
                await c.get("http://127.0.0.1:9/v1/x")
            except httpx.TransportError as exc:
                return type(exc).__name__
        return "answered"

    assert asyncio.run(main()) == "ConnectTimeout"


def test_a_body_larger_than_the_receive_buffer_arrives_whole() -> None:
    big = b'{"id": "p1", "output": "' + bytes(range(97, 123)) * 200_000 + b'"}'  # 5.2 MB

    async def serve_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(big))
            await writer.drain()

    async def main() -> None:
        async with Server(serve_big) as server:
            lean = transport("lean")
            async with httpx.AsyncClient(transport=lean) as client:
                for _ in range(2):
                    async with client.stream("GET", server.url + "/v1/big") as response:
                        got = b""
                        async for chunk in response.aiter_raw():
                            got += chunk
                            await asyncio.sleep(0)  # a slow reader: the socket is paused meanwhile
                    assert got == big
            assert server.connections == 1

    asyncio.run(main())


def test_an_answer_read_after_the_client_closed_closes_its_connection() -> None:
    async def main() -> None:
        async with Server(keep_alive) as server:
            lean = transport("lean")
            assert isinstance(lean, LeanTransport)
            client = httpx.AsyncClient(transport=lean)
            async with client.stream("GET", server.url + "/v1/x") as response:
                await client.aclose()
                assert (await response.aread()) == BODY
            assert lean._idle == {} and lean._open == 0  # closed, not left open in a closed pool

    asyncio.run(main())


def test_imported_while_respx_mocks_requests_still_reach_respx() -> None:
    """A test module that starts respx before anything imports jobrunner's HTTP modules: the
    handlers seen at import are respx's, so "unchanged since import" must not read as "not
    mocked" (the request would leave for the network instead of the mock)."""
    import subprocess
    import sys

    script = (
        "import asyncio, httpx, respx\n"
        "with respx.mock(assert_all_called=True) as mock:\n"
        "    route = mock.get('https://api.replicate.com/v1/predictions/p1').respond(200, json={'id': 'p1'})\n"
        "    from jobrunner.providers.http import HttpClient\n"
        "    from jobrunner.providers.wire import intercepted\n"
        "    assert intercepted()\n"
        "    async def main():\n"
        "        c = HttpClient('replicate', 'https://api.replicate.com', token='r8_x')\n"
        "        try:\n"
        "            return (await c.request('GET', '/v1/predictions/p1')).json()\n"
        "        finally:\n"
        "            await c.aclose()\n"
        "    print(asyncio.run(main())['id'], route.call_count)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["p1", "1"]
