"""A hostile HTTP endpoint on loopback for deadline tests: it trickles, black-holes or relays.

One `HostileServer` listens on 127.0.0.1 in a background thread (its own asyncio loop) and
behaves per its `mode`, which a test may switch at any time:

* `trickle`: answers every request with real headers (`200`, JSON, a Content-Length), then sends
  the body one byte per `interval` seconds: httpx's per-read timeout never fires;
* `blackhole`: accepts the connection, reads the request and never answers;
* `relay`: a plain TCP relay to `upstream` (e.g. the real local platform), so a test can start
  healthy and then make the provider vanish. Switching away from `relay` cuts open relays;
* `refuse`: stops listening, so connections are refused; any other mode listens again.

`refused_url()` is a loopback URL nobody listens on. Counters say what the server saw.

A refused port stays bound (a socket that never listens): the kernel refuses connections to it,
and no other process can take the port and answer in its place, so "refused" is certain on a
busy machine, not likely.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Literal

Mode = Literal["trickle", "blackhole", "relay", "refuse"]

TRICKLE_BODY = b'{"id": "trickled", "status": "processing", "logs": "' + b"x" * 4000 + b'"}'


# Bound, never listening: each keeps its port refused for the rest of the test process.
_RESERVED: list[socket.socket] = []


def _reserve(port: int = 0) -> socket.socket:
    """A socket bound to loopback `port` (0: any) that never listens: connections are refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request off a raw connection: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def refused_url() -> str:
    """http://127.0.0.1:<port> of a port held bound and never listened on (connections are refused)."""
    sock = _reserve()
    _RESERVED.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


class HostileServer:
    def __init__(self, mode: Mode = "trickle", *, interval: float = 1.0, upstream: str | None = None) -> None:
        self.mode: Mode = mode
        self.interval = interval
        self.upstream = upstream
        self.connections = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._placeholder: socket.socket | None = None  # holds the port while in `refuse` mode
        self.port = 0

    # -- control (from the test's thread) ---------------------------------------------------

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            await self._stop_listening(cut=True)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode) -> None:
        async def switch() -> None:
            old, self.mode = self.mode, mode
            if old == "relay" and mode != "relay":
                self._cut_all()
            if mode == "refuse":
                await self._stop_listening(cut=True)
            elif self._server is None:
                await self._listen()

        self._call(switch())

    def _call(self, coro: asyncio.coroutines.Coroutine) -> None:  # type: ignore[name-defined]
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- the server -------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self, *, cut: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            # Keep the port ours, refusing: another process must not take it and answer.
            self._placeholder = _reserve(self.port)
        if cut:
            self._cut_all()

    def _cut_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            if self.mode == "relay" and self.upstream:
                await self._relay(reader, writer)
                return
            while await self._read_request(reader):
                self.requests += 1
                if self.mode == "trickle":
                    await self._trickle(writer)
                else:  # blackhole: hold the connection open, say nothing
                    await asyncio.sleep(3600)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> bool:
        await read_request(reader)
        return True

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % len(TRICKLE_BODY))
        await writer.drain()
        for i in range(len(TRICKLE_BODY)):
            writer.write(TRICKLE_BODY[i:i + 1])
            await writer.drain()
            await asyncio.sleep(self.interval)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.upstream is not None
        host, port = self.upstream.split("//", 1)[1].split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port.rstrip("/")))
        self._open.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._open.discard(up_writer)
