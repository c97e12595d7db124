"""`create_app(data_dir, token, **options)`: the local platform as an ASGI (starlette) app.

In front of the routes sits one pure-ASGI gate (cheap: the benchmark path goes through it) that
1. picks the wire format: a request with `X-API-Key` and no `Authorization` (or under `/v1/projects`)
   is Emissary's, everything else Replicate's (both have a `/v1/models`);
2. checks the token (Replicate `Authorization: Bearer|Token <t>`, Emissary `X-API-Key: <t>`; the
   admin routes accept either) and answers 401 in that wire format's error shape;
3. enforces the request-size limit (413), on `Content-Length` and on the bytes actually received;
4. applies the fault knobs (latency, 500/503, 429 with `Retry-After`), never to `/_admin/*`.

Plug-ins, each optional (import guarded): `jobrunner.local.emissary_api.routes(platform)` returns the
Emissary routes, mounted in their own sub-app (with `exception_handlers(platform)` when defined);
`jobrunner.local.webhooks.attach(platform)` subscribes the webhook sender to job events.

Admin routes (token required): `GET|POST /_admin/faults` (read / change fault knobs at run time),
`GET /_admin/info` (pid, data dir, options; used by auto-start to recognize its platform),
`GET /_admin/stats` (requests answered so far, counted by the gate; benchmarks compare clients
by the requests the server saw, not by what each client says it sent).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobrunner.local.faults import FaultConfig, FaultConfigError
from jobrunner.local.platform import Platform, PlatformOptions
from jobrunner.local.problems import ApiError, ConnectionDropped, problem_response
from jobrunner.local.replicate_api import ReplicateAPI
from jobrunner.local.security import token_matches

log = logging.getLogger("jobrunner.local")

_CREATE_PATH = re.compile(r"^/v1/(predictions|(models|deployments)/[^/]+/[^/]+/predictions)/?$")
_GET_PREDICTION = re.compile(r"^/v1/predictions/[^/]+/?$")
_LIST_JOBS = re.compile(r"^/v1/(predictions|trainings)/?$")


def _category(method: str, path: str) -> str:
    if method == "POST" and _CREATE_PATH.match(path):
        return "create"
    if method == "GET" and _GET_PREDICTION.match(path):
        return "get"
    return "other"


def _replicate_error(status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return problem_response(status, ApiError(status, detail, title=title, **extra).body(), headers)


def _emissary_error(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"status": status, "error": error}, status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


class RequestStats:
    """Requests the gate saw (admin routes excepted): in all, per category, method and status.

    Keys: `requests`, `category.<create|get|other>` (as the fault knobs classify them),
    `method.<GET|POST|...>`, `list.<predictions|trainings>` (list pages), `status.<code>`
    (`status.dropped` when the connection closed without an answer). A dict increment per
    request: cheap enough to be always on.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


class Gate:
    """Wire selection, auth, size limit and faults, as one pure ASGI middleware."""

    def __init__(self, app: Any, platform: Platform, emissary_app: Any | None) -> None:
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
            stats.add("category." + _category(method, path))
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
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str], path: str, method: str, admin: bool
    ) -> None:
        authorization = headers.get("authorization")
        api_key = headers.get("x-api-key")
        emissary = self.emissary_app is not None and not admin and (
            (api_key is not None and authorization is None) or path.startswith("/v1/projects")
        )
        error = _emissary_error if emissary else None

        # --- auth -------------------------------------------------------------------------
        token = self.p.token
        if emissary:
            ok = token_matches(api_key, token)
            if not ok:
                await _emissary_error(401, "Unauthorized")(scope, receive, send)
                return
        else:
            presented = None
            if authorization:
                scheme, _, value = authorization.partition(" ")
                if scheme.lower() in ("bearer", "token"):
                    presented = value.strip()
            if admin and presented is None:
                presented = api_key
            if not token_matches(presented, token):
                detail = (
                    "You did not pass a valid authentication token"
                    if (authorization or (admin and api_key))
                    else "You did not pass an authentication token"
                )
                await _replicate_error(401, detail, title="Unauthenticated")(scope, receive, send)
                return

        # --- size limit ---------------------------------------------------------------------
        limit = self.p.faults.config.max_body_bytes
        too_large = f"Request bodies must be less than {limit} bytes"
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            resp = error(413, too_large) if error else _replicate_error(413, too_large)
            await resp(scope, receive, send)
            return

        # --- faults -------------------------------------------------------------------------
        extra_headers: list[tuple[bytes, bytes]] = []
        if not admin and self.p.faults.config.active():
            decision = self.p.faults.decide(_category(method, path), self.p.clock.monotonic())
            if decision.delay:
                await asyncio.sleep(decision.delay)
            if decision.ratelimit_remaining is not None:
                extra_headers = [(b"ratelimit-remaining", str(decision.ratelimit_remaining).encode()), (b"ratelimit-reset", b"1")]
            if decision.status == 429:
                wait = decision.retry_after or 1
                h = {"Retry-After": str(wait)}
                resp = (
                    error(429, f"Too many requests; retry after {wait}s", h) if error
                    else _replicate_error(429, f"Request was throttled. Your rate limit resets in ~{wait}s.", headers=h, retry_after=wait)
                )
                await resp(scope, receive, send)
                return
            if decision.status is not None:
                msg = "Internal server error (injected fault)" if decision.status < 503 else "Service unavailable (injected fault)"
                resp = error(decision.status, msg) if error else _replicate_error(decision.status, msg)
                await resp(scope, receive, send)
                return

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

        target = self.emissary_app if emissary else self.app
        try:
            await target(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            resp = error(413, too_large) if error else _replicate_error(413, too_large)
            await resp(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status, exc.body(), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = "The requested resource could not be found." if exc.status_code == 404 else str(exc.detail)
    return problem_response(exc.status_code, {"detail": detail, "status": exc.status_code}, exc.headers)


async def _emissary_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body: dict[str, Any] = {"status": exc.status_code, "error": "Not Found" if exc.status_code == 404 else str(exc.detail)}
    if exc.status_code == 404:
        body["code"] = "object_not_found"
    return JSONResponse(body, status_code=exc.status_code)


class PlatformApp(Starlette):
    """The platform's Starlette app; it notes each HTTP connection's transport in the scope (as
    `jobrunner.transport`, when the server exposes it) so a fault can drop the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["jobrunner.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


def _load_plugin(name: str) -> Any | None:
    try:
        return importlib.import_module(f"jobrunner.local.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"jobrunner.local.{name}":
            return None
        raise


class _DropFilter(logging.Filter):
    """Keep uvicorn's log free of tracebacks for connections dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def create_app(
    data_dir: Path,
    token: str,
    *,
    workers: int = 2,
    faults: FaultConfig | dict[str, Any] | str | None = None,
    min_cancel_after: float = 5.0,
    max_wait: float = 60.0,
    page_size: int = 100,
    max_body_bytes: int | None = None,
    webhook_hosts: tuple[str, ...] | list[str] = (),
    **extra_options: Any,
) -> Starlette:
    """The platform app. `faults` is a `FaultConfig`, a dict of knobs or a `"k=v,..."` string;
    `JOBRUNNER_LOCAL_FAULTS` in the environment is applied first."""
    from jobrunner.local.faults import FaultState, parse_faults

    state = FaultState()
    env = os.environ.get("JOBRUNNER_LOCAL_FAULTS")
    if env:
        state.update(parse_faults(env))
    if isinstance(faults, FaultConfig):
        state.update(faults.as_dict())
    elif isinstance(faults, dict):
        state.update(faults)
    elif isinstance(faults, str):
        state.update(parse_faults(faults))
    if max_body_bytes is not None:
        state.update({"max_body_bytes": max_body_bytes})

    options = PlatformOptions(
        workers=workers, min_cancel_after=min_cancel_after, max_wait=max_wait, page_size=page_size,
        webhook_hosts=tuple(webhook_hosts),
    )
    platform = Platform(Path(data_dir), token, options=options, faults=state.config)
    platform.extra_options = extra_options  # type: ignore[attr-defined]
    platform.request_stats = RequestStats()  # type: ignore[attr-defined]
    replicate = ReplicateAPI(platform)

    async def get_faults(request: Request) -> Response:
        return JSONResponse(platform.faults.config.as_dict())

    async def set_faults(request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise FaultConfigError("expected a JSON object of fault knobs")
            config = platform.faults.update(changes)
        except (json.JSONDecodeError, FaultConfigError, TypeError) as exc:
            return problem_response(422, {"detail": str(exc), "status": 422})
        return JSONResponse(config.as_dict())

    async def stats(request: Request) -> Response:
        return JSONResponse(platform.request_stats.snapshot())

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "pid": os.getpid(),
                "data_dir": str(platform.data_dir.resolve()),
                "workers": platform.options.workers,
                "emissary": emissary_app is not None,
            }
        )

    emissary_mod = _load_plugin("emissary_api")
    emissary_app = None
    if emissary_mod is not None and hasattr(emissary_mod, "routes"):
        emissary_routes = list(emissary_mod.routes(platform))
        if hasattr(emissary_mod, "list_models_endpoint"):  # `GET /v1/models` exists on both wires
            emissary_routes.insert(0, Route("/v1/models", emissary_mod.list_models_endpoint(platform), methods=["GET"]))
        handlers = (
            emissary_mod.exception_handlers(platform)
            if hasattr(emissary_mod, "exception_handlers")
            else {HTTPException: _emissary_http_error}
        )
        emissary_app = Starlette(routes=emissary_routes, exception_handlers=handlers)
    webhooks_mod = _load_plugin("webhooks")
    if webhooks_mod is not None and hasattr(webhooks_mod, "attach"):
        webhooks_mod.attach(platform)

    # Seeding and restart recovery run here, not in the lifespan, so an app driven in-process
    # through httpx.ASGITransport (which runs no lifespan) is complete too.
    replicate.seed_builtins()
    platform.jobs.recover_after_restart()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await platform.shutdown()

    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_DropFilter())
    app = PlatformApp(
        routes=[
            *replicate.routes(),
            Route("/_admin/faults", get_faults, methods=["GET"]),
            Route("/_admin/faults", set_faults, methods=["POST"]),
            Route("/_admin/info", info, methods=["GET"]),
            Route("/_admin/stats", stats, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.add_middleware(Gate, platform=platform, emissary_app=emissary_app)
    app.state.platform = platform
    return app
