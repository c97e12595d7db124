"""`create_app(data_dir, token, **options)`: the local platform as an ASGI (starlette) app.

The composition root of `jobrunner.local`: it builds the neutral `Platform` core, each wire's
service and routes (`replicate`, mounted on the main app; `emissary`, mounted in its own sub-app
so its errors keep their own shape), and puts the `gate.Gate` middleware in front (wire
selection, auth, size limit, faults, request counting).

Admin routes (token required): `GET|POST /_admin/faults` (read / change fault knobs at run time),
`GET /_admin/info` (pid, data dir, options, `build`: the build fingerprint computed at start,
`running_jobs`: jobs queued or running; auto-start uses it to recognize its platform and to
replace one of another jobrunner build, see `jobrunner.local.build`),
`GET /_admin/stats` (requests answered so far, counted by the gate; benchmarks compare clients
by the requests the server saw, not by what each client says it sent).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobrunner.local.build import build_fingerprint
from jobrunner.local.drop import ConnectionDropped
from jobrunner.local.emissary import errors as emissary_errors
from jobrunner.local.emissary.routes import EmissaryRoutes
from jobrunner.local.emissary.service import EmissaryService
from jobrunner.local.faults import FaultConfig, FaultConfigError, FaultState, parse_faults
from jobrunner.local.gate import Gate
from jobrunner.local.platform import Platform, PlatformOptions
from jobrunner.local.replicate.errors import ApiError, problem_response
from jobrunner.local.replicate.routes import ReplicateRoutes
from jobrunner.local.replicate.service import ReplicateService

log = logging.getLogger("jobrunner.local")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status, exc.body(), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = "The requested resource could not be found." if exc.status_code == 404 else str(exc.detail)
    return problem_response(exc.status_code, {"detail": detail, "status": exc.status_code}, dict(exc.headers or {}))


class PlatformApp(Starlette):
    """The platform's Starlette app; it notes each HTTP connection's transport in the scope (as
    `jobrunner.transport`, when the server exposes it) so a fault can drop the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["jobrunner.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


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
) -> Starlette:
    """The platform app. `faults` is a `FaultConfig`, a dict of knobs or a `"k=v,..."` string;
    `JOBRUNNER_LOCAL_FAULTS` in the environment is applied first.

    `app.state` holds `platform` (the core), `replicate` and `emissary` (the wires' services).
    """
    options = PlatformOptions(
        workers=workers, min_cancel_after=min_cancel_after, max_wait=max_wait, page_size=page_size,
        webhook_hosts=tuple(webhook_hosts),
    )
    platform = Platform(Path(data_dir), token, options=options, faults=_fault_config(faults, max_body_bytes))
    # The services seed and recover their state here, not in the lifespan, so an app driven
    # in-process through httpx.ASGITransport (which runs no lifespan) is complete too.
    replicate = ReplicateService(platform)
    emissary = EmissaryService(platform)
    emissary_app = Starlette(
        routes=EmissaryRoutes(emissary).routes(),
        exception_handlers={HTTPException: emissary_errors.http_error},
    )

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
        routes=[*ReplicateRoutes(replicate).routes(), *_admin_routes(platform)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.add_middleware(Gate, platform=platform, emissary_app=emissary_app)
    app.state.platform = platform
    app.state.replicate = replicate
    app.state.emissary = emissary
    return app


def _fault_config(faults: FaultConfig | dict[str, Any] | str | None, max_body_bytes: int | None) -> FaultConfig:
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
    return state.config


def _admin_routes(platform: Platform) -> list[Route]:
    build = build_fingerprint()  # once, at start: the code this server runs, whatever is on disk later

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
                "emissary": True,  # both wires are always served; kept for clients that read it
                "build": build,
                "running_jobs": platform.runner.active(),
            }
        )

    return [
        Route("/_admin/faults", get_faults, methods=["GET"]),
        Route("/_admin/faults", set_faults, methods=["POST"]),
        Route("/_admin/info", info, methods=["GET"]),
        Route("/_admin/stats", stats, methods=["GET"]),
    ]
