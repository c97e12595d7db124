"""Replicate-style errors: RFC 7807 problem+json bodies, raised as `ApiError` from route code.

Also the deliberate connection drop used by the "drop after create" fault: `DropConnection` aborts
the connection before any response byte is sent (an in-process `httpx.ASGITransport` client sees
a transport error, `httpx.RemoteProtocolError`).
"""
from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.title:
            out["title"] = self.title
        out["detail"] = self.detail
        out["status"] = self.status
        out.update(self.extra)
        return out


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def not_found() -> ApiError:
    return ApiError(404, "The requested resource could not be found.")


def invalid_fields(problems: list[tuple[str, str, str]], title: str = "Input validation failed") -> ApiError:
    """422 with Replicate's `invalid_fields`: each problem is (type, field, description)."""
    detail = "".join(f"- {field + ': ' if field else ''}{desc}\n" for _, field, desc in problems)
    return ApiError(
        422,
        detail,
        title=title,
        invalid_fields=[{"type": t, "field": f, "description": d} for t, f, d in problems],
    )


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
