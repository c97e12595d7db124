"""A lean HTTP/1.1 transport under httpx for the provider hot path (creates and polls).

Why it exists: at apply's rate most of a request's client CPU was below httpx's client layer,
in httpcore's pool, h11's event machinery, the request and response stream wrappers and the
socket backend (about 1.0 of 1.15 ms per create; httpx's `AsyncClient` itself costs about
0.15 ms). This transport does the same exchange with a keep-alive pool of `asyncio.Protocol`
connections, the request's bytes written in one go and the answer parsed straight from the
receive buffer (status line, headers, Content-Length or chunked bodies, or up to the close).
httpx stays the client: `HttpClient` builds requests, handles auth, cookies and decoding as
before; only `handle_async_request` is replaced.

What does not change: every failure is raised as the httpx exception httpcore's pool would
have made of it in the same situation, so `jobrunner.providers.http` stays the one place that
translates failures, and which ones count as "not sent" (so a create may be sent again) is
exactly as before:

| situation                                              | httpx's transport (httpcore) | this transport        |
|--------------------------------------------------------|------------------------------|-----------------------|
| connection refused, unreachable, name not resolved     | ConnectError                 | ConnectError          |
| TLS handshake or certificate failure                   | ConnectError                 | ConnectError          |
| no connection within the connect timeout               | ConnectTimeout               | ConnectTimeout        |
| every connection busy past the pool timeout            | PoolTimeout                  | PoolTimeout           |
| server closes before answering (fresh or pooled conn.) | RemoteProtocolError          | RemoteProtocolError   |
| server resets the connection before answering          | ReadError                    | ReadError             |
| server closes in the middle of the headers or body     | RemoteProtocolError          | RemoteProtocolError   |
| no bytes within the read timeout (headers or body)     | ReadTimeout                  | ReadTimeout           |
| request body not taken within the write timeout        | WriteTimeout                 | WriteTimeout          |
| a malformed status line, header or chunk size          | RemoteProtocolError          | RemoteProtocolError   |
| a pooled connection the server closed while idle       | dropped, a new one is used   | the same              |

(httpcore swallows a failed write and reads the answer, so a write failure shows as the
read-side error above; so does this transport. `tests/providers/test_wire.py` runs each
situation against a raw loopback socket server through this transport, httpx's on the asyncio
backend and httpx's stock one, and requires the same outcome from all three.)

Anything unusual goes to httpx's own transport (`fallback`, built by `http.py` on the asyncio
network backend): a streamed request body (uploads), a URL scheme other than http/https, request
extensions other than timeouts, header bytes h11 would refuse (so its LocalProtocolError stays
the answer). Proxies from the environment never reach here: httpx mounts its own transport for
them; a transport a caller passes to `HttpClient` is used as given; jobrunner's client asks for
neither HTTP/2 nor a Unix socket, which this transport does not speak.
`JOBRUNNER_HTTP_TRANSPORT=httpx` (see `use_lean_transport`) turns this transport off.

respx and instrumentation libraries intercept requests by replacing httpcore's
`AsyncConnectionPool.handle_async_request` (respx's default mocker) or httpx's
`AsyncHTTPTransport.handle_async_request`. While either is replaced, requests go to the fallback,
so they are intercepted as before. The check is made per request, not per client: tests start
respx after a client was built, and the check is two identity comparisons (about 0.1 us).
"""
from __future__ import annotations

import asyncio
import os
import re
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpcore
import httpx

from jobrunner.errors import ConfigError
from jobrunner.providers.netbackend import ConnectionBuffer, wait_or_timeout

ESCAPE_VAR = "JOBRUNNER_HTTP_TRANSPORT"  # "httpx": httpx's own transport for every request
MAX_HEAD_BYTES = 100 * 1024  # as httpcore's h11 connection: the largest status line + headers
READ_CHUNK = 64 * 1024  # the most one body chunk holds (httpcore reads 64 KiB at a time)
BUFFER_HIGH = 1024 * 1024  # stop reading the socket while this much arrived and was not taken

_POOL_HANDLER = httpcore.AsyncConnectionPool.handle_async_request
_TRANSPORT_HANDLER = httpx.AsyncHTTPTransport.handle_async_request
# Were the handlers above httpcore's and httpx's own when this module was imported? Not when it is
# first imported while respx already mocks (a test that starts respx, then imports jobrunner): then
# "unchanged since import" means "still mocked", and every request must go through httpx.
_HANDLERS_GENUINE = (getattr(_POOL_HANDLER, "__module__", "") or "").startswith("httpcore.") and (
    getattr(_TRANSPORT_HANDLER, "__module__", "") or "").startswith("httpx.")
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z")  # an HTTP header name (RFC 9110 token)
_GOOD_NAMES: set[bytes] = set()  # answer header names already matched against _TOKEN
_STATUS = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: (.*))?\Z", re.S)
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
DEFAULT_PORTS = {"http": 80, "https": 443}  # also jsonwire's
_NO_BODY_STATUS = frozenset({204, 304})
# How an answer's body is delimited: none at all, Content-Length, chunked, or the server's close.
Framing = Literal["none", "length", "chunked", "close"]


TransportChoice = Literal["lean", "httpx"]
TRANSPORT_CHOICES: tuple[TransportChoice, ...] = ("lean", "httpx")


def transport_choice(env: Mapping[str, str]) -> TransportChoice | None:
    """`JOBRUNNER_HTTP_TRANSPORT` as given (unset or empty: "lean"); None for a value it does not
    know, which `check_transport_choice` reports before any request (a typo of the escape hatch
    must not silently leave the transport it was meant to turn off)."""
    value = env.get(ESCAPE_VAR, "").strip().lower() or "lean"
    return value if value in TRANSPORT_CHOICES else None


def check_transport_choice(env: Mapping[str, str]) -> None:
    """A ConfigError for a `JOBRUNNER_HTTP_TRANSPORT` value that is neither `lean` nor `httpx`."""
    if transport_choice(env) is None:
        raise ConfigError(
            f"{ESCAPE_VAR}={env.get(ESCAPE_VAR, '').strip()!r} is not a transport jobrunner knows",
            hint=f"set it to one of {', '.join(TRANSPORT_CHOICES)} (`httpx`: httpx's own transport for every "
                 f"request; `lean` or unset: the default), or unset it")


def use_lean_transport() -> bool:
    """False when `JOBRUNNER_HTTP_TRANSPORT=httpx` asks for httpx's own transport throughout."""
    return transport_choice(os.environ) != "httpx"


def intercepted() -> bool:
    """Has respx (or an instrumentation library) replaced httpcore's or httpx's request handler?"""
    return (httpcore.AsyncConnectionPool.handle_async_request is not _POOL_HANDLER
            or httpx.AsyncHTTPTransport.handle_async_request is not _TRANSPORT_HANDLER
            or not _HANDLERS_GENUINE)


# --- one connection ------------------------------------------------------------------------

class _Conn(ConnectionBuffer):
    """One keep-alive connection: what arrived and has not been parsed, and whether it ended."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        super().__init__()
        self.origin = origin
        self.reading_paused = False
        self.idle_since = 0.0
        self._poller: select.poll | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(self.buffer) > BUFFER_HIGH and self.transport is not None and not self.reading_paused:
            self.reading_paused = True  # a big body read slowly: let TCP hold the rest
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.resume_writing()  # a body still being sent stops waiting: the read reports the end
        return super().eof_received()

    # used by the exchange

    def take(self, size: int) -> bytes:
        """Up to `size` bytes from the front of the buffer, reading resumed once it is small."""
        chunk = bytes(self.buffer[:size])
        del self.buffer[:size]
        if self.reading_paused and len(self.buffer) < READ_CHUNK and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def more(self, timeout: float | None) -> None:
        """Wait until bytes arrive or the connection ends; ReadTimeout after `timeout` seconds."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await wait_or_timeout(self.waiter, timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading from the server") from None
        finally:
            self.waiter = None

    async def send(self, data: bytes, timeout: float | None) -> None:
        """Write the whole request; a closed connection is left for the read to report, as httpcore
        does (it ignores a failed write and reads the answer, which may be a well-formed error)."""
        transport = self.transport
        if transport is None or self.eof or transport.is_closing():
            return
        transport.write(data)
        if self.paused:  # a big body: wait until the kernel took enough of it
            self.drained = asyncio.get_running_loop().create_future()
            try:
                await wait_or_timeout(self.drained, timeout)
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending to the server") from None
            finally:
                self.drained = None

    def ended(self) -> BaseException:
        """The error of a read that found the connection over (nothing more will arrive)."""
        if self.error is not None:
            return httpx.ReadError(str(self.error) or type(self.error).__name__)
        return httpx.RemoteProtocolError("Server disconnected without sending a response.")

    def reusable(self, now: float, expiry: float | None) -> bool:
        """Can an idle pooled connection take a request? Not if the server closed it, sent bytes
        nobody asked for, or it idled past the keep-alive expiry; a poll with no wait (as
        httpcore's own check) also sees a FIN the event loop has not handled yet."""
        transport = self.transport
        if self.eof or self.buffer or transport is None or transport.is_closing():
            return False
        if expiry is not None and now - self.idle_since > expiry:
            return False
        if self._poller is None:
            raw = transport.get_extra_info("socket")
            if raw is None:
                return True
            self._poller = select.poll()
            self._poller.register(raw.fileno(), select.POLLIN)
        return not self._poller.poll(0)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.eof = True


# --- the answer ----------------------------------------------------------------------------

def _head_end(buffer: bytearray) -> tuple[int, int]:
    """(end of the headers, start of the body) in `buffer`, or (-1, -1) if not all there yet."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0:
        return end, end + 4
    found = _END_OF_HEAD.search(buffer)  # bare LF line ends, which h11 accepts too
    return (found.start(), found.end()) if found else (-1, -1)


async def _read_head(conn: _Conn, timeout: float | None) -> bytes:
    """The status line and headers of the next answer, removed from the buffer."""
    while True:
        end, start = _head_end(conn.buffer)
        if end >= 0:
            head = bytes(conn.buffer[:end])
            del conn.buffer[:start]
            return head
        if len(conn.buffer) > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError("the answer's headers are larger than 100 KiB")
        if conn.eof:
            if conn.buffer and conn.error is None:
                raise httpx.RemoteProtocolError("peer closed connection in the middle of the answer's headers")
            raise conn.ended()
        await conn.more(timeout)


def _good_name(name: bytes) -> bool:
    """Is `name` an HTTP header name? Remembered when it is (a server sends the same few)."""
    if not _TOKEN.match(name):
        return False
    if len(_GOOD_NAMES) < 1024:
        _GOOD_NAMES.add(name)
    return True


def _parse_head(head: bytes) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    """(HTTP version, status, reason, raw headers) of an answer's head; RemoteProtocolError if malformed."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status_line = _STATUS.match(lines[0].rstrip(b"\r"))
    if status_line is None:
        raise httpx.RemoteProtocolError(f"illegal status line: {lines[0][:100]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding, which h11 joins
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t\r"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or (name not in _GOOD_NAMES and not _good_name(name)):
            raise httpx.RemoteProtocolError(f"illegal header line: {line[:100]!r}")
        headers.append((name, value.strip(b" \t\r")))
    version, status, reason = status_line.groups()
    return b"HTTP/" + version, int(status), reason or b"", headers


def _framing(head_request: bool, version: bytes, status: int,
             headers: list[tuple[bytes, bytes]]) -> tuple[Framing, int, bool]:
    """How the body is delimited ("none", "length", "chunked", "close"), its length, keep-alive."""
    length: int | None = None
    chunked = False
    keep_alive = version >= b"HTTP/1.1"
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            for part in value.split(b","):
                part = part.strip()
                if not part.isdigit() or (length is not None and int(part) != length):
                    raise httpx.RemoteProtocolError(f"bad Content-Length: {value[:40]!r}")
                length = int(part)
        elif lname == b"transfer-encoding":
            if value.strip().lower() != b"chunked" or chunked:
                raise httpx.RemoteProtocolError("Only Transfer-Encoding: chunked is supported")
            chunked = True
        elif lname == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]:
            keep_alive = False
    if head_request or status in _NO_BODY_STATUS:
        return "none", 0, keep_alive
    if chunked:
        return "chunked", 0, keep_alive
    if length is not None:
        return "length", length, keep_alive
    return "close", 0, False  # read until the server closes: the connection ends with the body


class _Body(httpx.AsyncByteStream):
    """An answer's body, read from the connection's buffer; the connection goes back to the pool
    when the body was read to its end, and is closed when it was not (or anything failed)."""

    def __init__(self, pool: LeanTransport, conn: _Conn, mode: Framing, length: int, keep_alive: bool,
                 timeout: float | None) -> None:
        self._pool, self._conn, self._mode, self._length = pool, conn, mode, length
        self._keep_alive, self._timeout = keep_alive, timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        conn = self._conn
        if self._mode == "length" and 0 < self._length == len(conn.buffer) <= READ_CHUNK:
            # The usual answer: all of it arrived with the headers.
            chunk = conn.take(self._length)
            self._finish(reuse=self._keep_alive)
            yield chunk
            return
        try:
            if self._mode == "length":
                async for chunk in self._by_length():
                    yield chunk
            elif self._mode == "chunked":
                async for chunk in self._chunked():
                    yield chunk
            elif self._mode == "close":
                async for chunk in self._until_close():
                    yield chunk
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=self._keep_alive)

    def take_whole(self, limit: int) -> bytes | None:
        """The whole body at once when it all came with the head and is at most `limit` bytes
        (nearly every answer), the connection released; None when it must be iterated."""
        if self._mode == "none":
            return b""
        conn = self._conn
        if self._done or self._mode != "length" or not 0 < self._length == len(conn.buffer) <= limit:
            return None
        chunk = conn.take(self._length)
        self._finish(reuse=self._keep_alive)
        return chunk

    async def aclose(self) -> None:
        self._finish(reuse=False)  # a body not read to its end: the connection cannot be reused

    def _finish(self, *, reuse: bool) -> None:
        if not self._done:
            self._done = True
            self._pool._release(self._conn, reuse=reuse)

    async def _by_length(self) -> AsyncIterator[bytes]:
        conn, remaining = self._conn, self._length
        while remaining:
            if not conn.buffer:
                if conn.eof:
                    if conn.error is not None:
                        raise conn.ended()
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body: "
                        f"received {self._length - remaining} bytes, expected {self._length}")
                await conn.more(self._timeout)
                continue
            chunk = conn.take(min(remaining, READ_CHUNK))
            remaining -= len(chunk)
            yield chunk

    async def _line(self) -> bytes:
        """One CRLF-ended line of the chunked framing (without its end)."""
        conn = self._conn
        while (end := conn.buffer.find(b"\n")) < 0:
            if len(conn.buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("a chunk size line is too long")
            await self._more_or_incomplete()
        return conn.take(end + 1).rstrip(b"\r\n")

    async def _more_or_incomplete(self) -> None:
        conn = self._conn
        if conn.eof:
            if conn.error is not None:
                raise conn.ended()
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body: incomplete chunked read")
        await conn.more(self._timeout)

    async def _chunked(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            size_text = (await self._line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"illegal chunk size: {size_text[:40]!r}") from None
            if size == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                return
            while size:
                if not conn.buffer:
                    await self._more_or_incomplete()
                    continue
                chunk = conn.take(min(size, READ_CHUNK))
                size -= len(chunk)
                yield chunk
            if await self._line():
                raise httpx.RemoteProtocolError("a chunk is longer than its size")

    async def _until_close(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.buffer:
                yield conn.take(READ_CHUNK)
            elif conn.eof:
                if conn.error is not None:
                    raise conn.ended()
                return
            else:
                await conn.more(self._timeout)


@dataclass(frozen=True, slots=True)
class AnswerHead:
    """An answer's status line and headers, as read; `body` reads the rest from the connection
    (iterate it to the end, or `aclose` it: either way the connection is released)."""

    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: _Body


# --- the pool and the transport ------------------------------------------------------------

class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over a keep-alive pool of asyncio connections; see the module docstring."""

    def __init__(self, *, fallback: httpx.AsyncBaseTransport, ssl_context: ssl.SSLContext,
                 limits: httpx.Limits) -> None:
        self.fallback = fallback
        self._ssl = ssl_context
        self._max = limits.max_connections or 100
        self._max_idle = limits.max_keepalive_connections or self._max
        self._expiry = limits.keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open = 0  # connections open or being opened, idle ones included
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._names: set[bytes] = set()  # header names already checked against h11's rule
        self._closed = False
        self.stats = {"lean": 0, "fallback": 0, "connections": 0}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wire = None if intercepted() else self._wire_bytes(request)
        if wire is None:
            self.stats["fallback"] += 1
            return await self.fallback.handle_async_request(request)
        return await self._exchange(request, wire)

    async def aclose(self) -> None:
        self._closed = True  # an answer still being read closes its connection when it ends
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
                self._open -= 1
        self._idle.clear()
        await self.fallback.aclose()

    # -- building the request ---------------------------------------------------------------

    def _wire_bytes(self, request: httpx.Request) -> bytes | None:
        """The request as it goes on the wire, or None when it is for the fallback."""
        url = request.url
        if url.scheme not in DEFAULT_PORTS or not isinstance(request.stream, httpx.ByteStream):
            return None
        if request.extensions and set(request.extensions) - {"timeout"}:
            return None
        head = self.head_bytes(request.method.encode("ascii"), url.raw_path, request.headers.raw)
        if head is None:
            return None
        body = request.content
        return head + body if body else head

    def head_bytes(self, method: bytes, target: bytes, raw: list[tuple[bytes, bytes]]) -> bytes | None:
        """The request line and headers as they go on the wire, or None when a header name or
        value is one h11 refuses (the fallback then raises its LocalProtocolError)."""
        for name, _ in raw:
            if name not in self._names:
                if not _TOKEN.match(name):
                    return None
                self._names.add(name)
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in raw:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        lines = len(raw) + 2
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
            return None  # a header value h11 refuses: its LocalProtocolError stays the answer
        return head

    # -- one exchange -----------------------------------------------------------------------

    async def _exchange(self, request: httpx.Request, wire: bytes) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        head = await self.open(origin, wire, request.extensions.get("timeout") or {}, request.method == "HEAD")
        return httpx.Response(head.status, headers=head.headers, stream=head.body,
                              extensions={"http_version": head.version, "reason_phrase": head.reason})

    async def open(self, origin: tuple[str, str, int], wire: bytes, timeouts: Mapping[str, float | None],
                   head_request: bool = False) -> AnswerHead:
        """Send `wire` (a whole request) to `origin` on a pooled connection and read the answer's
        head; its body is left on the connection for `AnswerHead.body` to read. Failures are the
        httpx exceptions of the module docstring's table."""
        self.stats["lean"] += 1
        conn = await self._connection(origin, timeouts.get("pool"), timeouts.get("connect"))
        read = timeouts.get("read")
        try:
            await conn.send(wire, timeouts.get("write"))
            while True:
                version, status, reason, headers = _parse_head(await _read_head(conn, read))
                if status >= 200:
                    break
                if status == 101:
                    raise httpx.RemoteProtocolError("the server switched protocols, which was not asked for")
            mode, length, keep_alive = _framing(head_request, version, status, headers)
        except BaseException:
            self._release(conn, reuse=False)
            raise
        body = _Body(self, conn, mode, length, keep_alive, read)
        if mode == "none":
            body._finish(reuse=keep_alive)
        return AnswerHead(version, status, reason, headers, body)

    # -- the pool ---------------------------------------------------------------------------

    async def _connection(self, origin: tuple[str, str, int], pool_timeout: float | None,
                          connect_timeout: float | None) -> _Conn:
        """A pooled connection to `origin` still open, or a new one within the limits."""
        until = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            conn = self._pooled(origin)
            if conn is not None:
                return conn
            if self._open < self._max:
                self._open += 1
                try:
                    return await self._connect(origin, connect_timeout)
                except BaseException:
                    self._slot_freed()
                    raise
            if not self._close_one_idle():
                await self._wait_for_slot(until)

    def _pooled(self, origin: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._expiry):
                return conn
            conn.close()
            self._open -= 1
        return None

    def _close_one_idle(self) -> bool:
        for conns in self._idle.values():
            if conns:
                conns.pop(0).close()
                self._open -= 1
                return True
        return False

    async def _wait_for_slot(self, until: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(None if until is None else max(0.0, until - time.monotonic())):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("timed out waiting for a free connection") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self, origin: tuple[str, str, int], timeout: float | None) -> _Conn:
        scheme, host, port = origin
        conn = _Conn(origin)
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self._ssl, "server_hostname": host, "ssl_handshake_timeout": timeout}
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().create_connection(lambda: conn, host, port, **tls)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:  # refused, unreachable, not resolved, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        self.stats["connections"] += 1
        return conn

    def _release(self, conn: _Conn, *, reuse: bool) -> None:
        """The answer on `conn` is over: keep the connection for the next request, or close it."""
        keep = reuse and not self._closed and not conn.eof and not conn.buffer
        if keep and sum(map(len, self._idle.values())) < self._max_idle:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake_one()
            return
        conn.close()
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


__all__ = ["DEFAULT_PORTS", "ESCAPE_VAR", "TRANSPORT_CHOICES", "AnswerHead", "LeanTransport", "TransportChoice",
           "check_transport_choice", "intercepted", "transport_choice", "use_lean_transport"]
