"""Running the platform app under uvicorn in the foreground (`jobrunner serve`).

Once the socket is bound, the actual address is written to `<data_dir>/server.json`
(`{"pid", "host", "port", "url", "started_at"}`) so `--port 0` works and auto-start can find the
server; the file is removed on a clean exit. An exclusive lock on `<data_dir>/server.lock` keeps
two servers from sharing one data directory.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobrunner.local.runtime import RUNTIME_FILE, read_runtime, write_runtime
from jobrunner.local.security import check_bind, load_or_create_token

LOCK_FILE = "server.lock"


class AlreadyRunning(RuntimeError):
    """Another server holds this data directory."""


class StartupFailed(RuntimeError):
    """uvicorn could not start (typically: the port is in use)."""


@dataclass
class ServeOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8123
    token: str | None = None
    workers: int = 2
    allow_remote: bool = False
    faults: dict[str, Any] = field(default_factory=dict)
    log_level: str = "warning"
    idle_stop: float | None = None  # stop after this many seconds without requests or running jobs


class _CoalescingTransport:
    """Joins the writes made within one event-loop step into one `send`: uvicorn writes a
    response's head and body separately, which costs two syscalls and two wake-ups of the client."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _NoDelayMixin:
    """TCP_NODELAY (no Nagle wait for the client's delayed ACK) and one `send` per response
    instead of one for the head and one for the body."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(_CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[misc]


class NoDelayH11Protocol(_NoDelayMixin, H11Protocol):
    """uvicorn's pure-Python HTTP/1.1 protocol (h11), tuned as above."""


def _http_protocol() -> type:
    """httptools' C parser when it is installed (`pip install 'jobrunner[fast]'`), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return NoDelayH11Protocol
    return type("NoDelayHttpToolsProtocol", (_NoDelayMixin, HttpToolsProtocol), {})


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> uvicorn.Config:
    """The uvicorn settings the platform runs with (also used by tests serving it in a thread)."""
    kwargs.setdefault("log_level", "warning")
    return uvicorn.Config(
        app, host=host, port=port, http=_http_protocol(), access_log=False, lifespan="on",
        timeout_graceful_shutdown=3, **kwargs,
    )


def _lock(data_dir: Path) -> TextIO:
    # Not a `with` block: the handle (and so the flock) must outlive this call, until the server stops.
    fh = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        info = read_runtime(data_dir)
        where = f" (pid {info['pid']}, {info['url']})" if info else ""
        raise AlreadyRunning(f"a local platform is already running for {data_dir}{where}") from None
    return fh


def serve(options: ServeOptions, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    from jobrunner.local.app import create_app

    check_bind(options.host, allow_remote=options.allow_remote, token_given=bool(options.token))
    data_dir = options.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(data_dir)
    try:
        token = load_or_create_token(data_dir, options.token)
        app = create_app(data_dir, token, workers=options.workers, faults=options.faults or None)
        config = uvicorn_config(app, options.host, options.port, log_level=options.log_level)
        server = uvicorn.Server(config)
        try:
            idle = (app.state.platform, options.idle_stop) if options.idle_stop is not None else None
            asyncio.run(_run(server, data_dir, options.host, on_ready, idle))
        except SystemExit as exc:  # uvicorn exits on a failed bind, after logging why
            if server.started:
                raise
            raise StartupFailed(
                f"could not listen on {options.host}:{options.port} (is the port in use?)"
            ) from exc
    finally:
        try:
            info = read_runtime(data_dir)
            if info and info.get("pid") == os.getpid():
                (data_dir / RUNTIME_FILE).unlink(missing_ok=True)
        finally:
            lock.close()


async def _run(
    server: uvicorn.Server, data_dir: Path, host: str, on_ready: Callable[[dict[str, Any]], None] | None,
    idle: tuple[Any, float] | None = None,
) -> None:
    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        info = write_runtime(data_dir, host, port)
        if on_ready is not None:
            on_ready(info)

    watchers = [asyncio.create_task(announce())]
    if idle is not None:
        watchers.append(asyncio.create_task(_stop_when_idle(server, *idle)))
    try:
        await server.serve()  # a failed bind raises uvicorn's SystemExit from here
    finally:
        for watcher in watchers:
            watcher.cancel()


async def _stop_when_idle(server: uvicorn.Server, platform: Any, idle_stop: float) -> None:
    """Ask uvicorn to exit once `idle_stop` seconds pass with no API request and no job queued or
    running. Activity is read from the request counter the gate keeps (admin requests, such as
    `serve --status` probes, do not count), so an idle check never keeps the platform alive."""
    poll = max(0.05, min(5.0, idle_stop / 4))
    last_count, idle_since = -1, time.monotonic()
    while not server.should_exit:
        await asyncio.sleep(poll)
        count = platform.request_stats.counts.get("requests", 0)
        if count != last_count or platform.runner.busy():
            last_count, idle_since = count, time.monotonic()
        elif time.monotonic() - idle_since >= idle_stop:
            print(f"jobrunner local platform: idle for {idle_stop:g}s with no running jobs, stopping", flush=True)
            server.should_exit = True
