"""The deliberate connection drop of the "drop after create" fault, for either wire.

`DropConnection` aborts the connection before any response byte is sent (an in-process
`httpx.ASGITransport` client sees a transport error, `httpx.RemoteProtocolError`): the create is
committed but the client never hears of it, which is what exactly-once creation must survive.
"""
from __future__ import annotations

from typing import Any

import httpx
from starlette.responses import Response


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised on purpose after a committed create, to drop the client's connection."""

    def __init__(self) -> None:
        super().__init__("connection dropped by the local platform's drop_after_create fault")


class DropConnection(Response):
    """Drop the client's connection without answering.

    Under uvicorn the app (see `app.PlatformApp`) finds the connection's transport and aborts it,
    so the client gets a reset with no response bytes at all; in-process (no transport) the
    exception itself reaches the `httpx.ASGITransport` client as a transport error.
    """

    def __init__(self) -> None:
        super().__init__(status_code=201)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        transport = scope.get("jobrunner.transport")
        if transport is not None:
            transport.abort()
        raise ConnectionDropped()
