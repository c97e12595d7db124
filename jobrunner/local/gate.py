"""The gate in front of the local platform's routes: one pure-ASGI middleware (cheap: the
benchmark path goes through it) that, for every request,

1. picks the wire format: a request with `X-API-Key` and no `Authorization` (or under `/v1/projects`)
   is Emissary's, everything else Replicate's (both have a `/v1/models`);
2. checks the token (Replicate `Authorization: Bearer|Token <t>`, Emissary `X-API-Key: <t>`; the
   admin routes accept either) and answers 401 in that wire format's error shape;
3. enforces the request-size limit (413), on `Content-Length` and on the bytes actually received;
4. applies the fault knobs (latency, 500/503, 429 with `Retry-After`), never to `/_admin/*`;
5. counts requests and answers into `platform.request_stats`.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp

from jobrunner.local.emissary.errors import error_response as emissary_error
from jobrunner.local.platform import Platform
from jobrunner.local.replicate.errors import error_response as replicate_error
from jobrunner.local.security import token_matches

_CREATE_PATH = re.compile(r"^/v1/(predictions|(models|deployments)/[^/]+/[^/]+/predictions)/?$")
_GET_PREDICTION = re.compile(r"^/v1/predictions/[^/]+/?$")
_LIST_JOBS = re.compile(r"^/v1/(predictions|trainings)/?$")


def category(method: str, path: str) -> str:
    """A request's fault category: `create`, `get` (one prediction) or `other`."""
    if method == "POST" and _CREATE_PATH.match(path):
        return "create"
    if method == "GET" and _GET_PREDICTION.match(path):
        return "get"
    return "other"


class _BodyTooLarge(Exception):
    pass


class Gate:
    """Wire selection, auth, size limit and faults, as one pure ASGI middleware."""

    def __init__(self, app: ASGIApp, platform: Platform, emissary_app: ASGIApp) -> None:
        self.app = app
        self.p = platform
        self.emissary_app = emissary_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        method: str = scope["method"]
        admin = path.startswith("/_admin/")
        if not admin:
            stats = self.p.request_stats
            stats.add("requests")
            stats.add("category." + category(method, path))
            stats.add("method." + method)
            if method == "GET" and _LIST_JOBS.match(path):
                stats.add("list." + path.rstrip("/").rsplit("/", 1)[-1])
            answered = dropped = False

            async def counting_send(message: dict[str, Any]) -> None:
                nonlocal answered, dropped
                if message["type"] == "http.response.start":
                    transport = scope.get("jobrunner.transport")
                    # A sub-app's error middleware answers 500 to a connection a fault just dropped
                    # (the Emissary routes): nothing reaches the client, so count it as dropped.
                    dropped = transport is not None and transport.is_closing()
                    if not dropped:
                        answered = True
                        stats.add(f"status.{message['status']}")
                if not dropped:
                    await send(message)

            try:
                await self._handle(scope, receive, counting_send, headers, path, method, admin)
            finally:
                if not answered:
                    stats.add("status.dropped")
            return
        await self._handle(scope, receive, send, headers, path, method, admin)

    async def _handle(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str], path: str, method: str,
        admin: bool,
    ) -> None:
        emissary = not admin and (
            ("x-api-key" in headers and "authorization" not in headers) or path.startswith("/v1/projects")
        )
        refusal = (self._refuse_unauthenticated(headers, emissary, admin)
                   or self._refuse_declared_size(headers, emissary))
        extra_headers: list[tuple[bytes, bytes]] = []
        if refusal is None and not admin and self.p.faults.config.active():
            refusal, extra_headers = await self._apply_faults(method, path, emissary)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._forward(scope, receive, send, emissary, extra_headers)

    def _refuse_unauthenticated(self, headers: dict[str, str], emissary: bool, admin: bool) -> Response | None:
        """401 in the wire's shape unless the request presents the platform token."""
        authorization = headers.get("authorization")
        api_key = headers.get("x-api-key")
        if emissary:
            return None if token_matches(api_key, self.p.token) else emissary_error(401, "Unauthorized")
        presented = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() in ("bearer", "token"):
                presented = value.strip()
        if admin and presented is None:
            presented = api_key
        if token_matches(presented, self.p.token):
            return None
        detail = (
            "You did not pass a valid authentication token"
            if (authorization or (admin and api_key))
            else "You did not pass an authentication token"
        )
        return replicate_error(401, detail, title="Unauthenticated")

    def _too_large(self, emissary: bool) -> Response:
        detail = f"Request bodies must be less than {self.p.faults.config.max_body_bytes} bytes"
        return emissary_error(413, detail) if emissary else replicate_error(413, detail)

    def _refuse_declared_size(self, headers: dict[str, str], emissary: bool) -> Response | None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.p.faults.config.max_body_bytes:
            return self._too_large(emissary)
        return None

    async def _apply_faults(
        self, method: str, path: str, emissary: bool
    ) -> tuple[Response | None, list[tuple[bytes, bytes]]]:
        """Delay the request, or answer it with an injected error; also the rate-limit headers to add."""
        decision = self.p.faults.decide(category(method, path), self.p.clock.monotonic())
        if decision.delay:
            await asyncio.sleep(decision.delay)
        extra_headers: list[tuple[bytes, bytes]] = []
        if decision.ratelimit_remaining is not None:
            extra_headers = [(b"ratelimit-remaining", str(decision.ratelimit_remaining).encode()),
                             (b"ratelimit-reset", b"1")]
        if decision.status == 429:
            wait = decision.retry_after or 1
            h = {"Retry-After": str(wait)}
            refusal = (
                emissary_error(429, f"Too many requests; retry after {wait}s", h) if emissary
                else replicate_error(429, f"Request was throttled. Your rate limit resets in ~{wait}s.",
                                     headers=h, retry_after=wait)
            )
            return refusal, extra_headers
        if decision.status is not None:
            msg = ("Internal server error (injected fault)" if decision.status < 503
                   else "Service unavailable (injected fault)")
            error = emissary_error(decision.status, msg) if emissary else replicate_error(decision.status, msg)
            return error, extra_headers
        return None, extra_headers

    async def _forward(
        self, scope: dict[str, Any], receive: Any, send: Any, emissary: bool, extra_headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Pass the request to its wire's app, counting the body bytes actually received (413 past the limit)."""
        limit = self.p.faults.config.max_body_bytes
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra_headers:
                    message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        target: Any = self.emissary_app if emissary else self.app
        try:
            await target(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._too_large(emissary)(scope, receive, send)
