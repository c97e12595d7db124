"""The Emissary wire's errors: `{"status", "error"}` bodies (+ `"code": "object_not_found"` on 404)."""
from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class EmissaryError(Exception):
    """Raised from Emissary service and route code; the routes answer it with `error_response`."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def error_response(status: int, error: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "error": error}
    if status == 404:
        body["code"] = "object_not_found"  # required by the SDK's APIErrorNotFound model
    return JSONResponse(body, status_code=status, headers=headers)


def not_found(what: str) -> EmissaryError:
    return EmissaryError(404, f"{what} not found")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) in the Emissary shape."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, "Not Found" if exc.status_code == 404 else str(exc.detail))
