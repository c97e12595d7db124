"""httpcore's sockets on plain asyncio: the network layer under every provider request.

httpx stays the HTTP client (requests, h11, the connection pool, timeouts, exceptions); this
module only replaces how httpcore reads and writes bytes. httpcore's default backend goes through
anyio, which costs more client CPU per request than the rest of the exchange at apply's rate: each
time the pool hands out a connection it asks every pooled connection whether the server closed it
(`get_extra_info("is_readable")`), and anyio answers that by building a dict of socket attributes
(a `getpeername` system call included) for each; each read and write also opens an anyio
cancel scope. Here a connection is an `asyncio.Protocol` that buffers what arrives, the raw
socket is looked up once, and a timeout is one timer handle.

What httpcore expects of a backend is kept exactly: reads return at most `max_bytes` and `b""`
at the end of the stream; failures are httpcore's own exceptions (`ConnectError`,
`ConnectTimeout`, `ReadError`, `ReadTimeout`, `WriteError`, `WriteTimeout`), which httpx turns
into the `httpx.TransportError`s that `jobrunner.providers.http` translates, so which failures
count as "not sent" (safe to retry even for a create) does not change. Anything unusual (a Unix
socket, socket options) goes to httpcore's own anyio backend.
"""
from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:  # a private module: read only by the type checker, never at run time
    from httpcore._backends.base import SOCKET_OPTION


class ConnectionBuffer(asyncio.Protocol):
    """What arrived on one connection and has not been read yet, and whether the server is gone
    (also the base of `wire`'s pooled connections)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self.drained: asyncio.Future[None] | None = None  # a write waiting for the send buffer
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: HTTP/1.1 sends nothing after the server's end

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake_reader(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def wait_or_timeout(future: asyncio.Future[None], timeout: float | None) -> None:
    """Await `future`, failing with TimeoutError after `timeout` seconds (None: no limit)."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(max(0.0, timeout), _expire, future)
    try:
        await future
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP connection (TLS included, through asyncio's own TLS transport)."""

    def __init__(self, transport: asyncio.Transport, conn: ConnectionBuffer) -> None:
        self._transport = transport
        self._conn = conn
        raw = transport.get_extra_info("socket")
        self._fd = raw.fileno() if raw is not None else -1
        self._poller: select.poll | None = None  # made at the first readability check, then reused

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        conn = self._conn
        if not conn.buffer and not conn.eof:
            conn.waiter = asyncio.get_running_loop().create_future()
            try:
                await wait_or_timeout(conn.waiter, timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading from the server") from None
            finally:
                conn.waiter = None
        if conn.buffer:
            data = bytes(conn.buffer[:max_bytes])
            del conn.buffer[:max_bytes]
            return data
        if conn.error is not None:
            raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__)
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        conn = self._conn
        if conn.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(str(conn.error) if conn.error else "the connection is closed")
        self._transport.write(buffer)
        if conn.paused:  # a big body: wait until the kernel took enough of it
            conn.drained = asyncio.get_running_loop().create_future()
            try:
                await wait_or_timeout(conn.drained, timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out sending to the server") from None
            finally:
                conn.drained = None
            if conn.error is not None:
                raise httpcore.WriteError(str(conn.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(self._transport, self._conn, ssl_context,
                                             server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from None
        assert transport is not None
        return AsyncioStream(transport, self._conn)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._readable()
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None

    def _readable(self) -> bool:
        """Would a read return at once? For an idle pooled connection, that means the server
        closed it (or sent something it should not have): httpcore then drops it instead of
        sending a request into it. Arrived bytes the loop has not handled yet count too."""
        conn = self._conn
        if conn.buffer or conn.eof or self._fd < 0 or self._transport.is_closing():
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)
        # A poll with no wait, as httpcore's own check does: bytes (or the server's FIN) that
        # arrived since the event loop last looked count too.
        return bool(self._poller.poll(0))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio; Unix sockets and socket options go to anyio's."""

    def __init__(self) -> None:
        self._fallback = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        if socket_options:
            return await self._fallback.connect_tcp(host, port, timeout, local_address, socket_options)
        loop = asyncio.get_running_loop()
        conn = ConnectionBuffer()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(lambda: conn, host, port, local_addr=local)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:  # refused, unreachable, a name that does not resolve (socket.gaierror)
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
        assert isinstance(transport, asyncio.Transport)
        return AsyncioStream(transport, conn)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._fallback.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


__all__ = ["AsyncioBackend", "AsyncioStream"]
