"""The `local` provider: the Replicate wire client pointed at the embedded local platform.

Nothing is started until the first request: a plan whose jobs are all terminal never boots the
platform. Then the endpoint comes from `providers.local.url` in jobrunner.yaml when set (with the
token from `JOBRUNNER_LOCAL_TOKEN` or the platform's token file), else from
`jobrunner.local.autostart.ensure_platform(root)`, which finds the workspace's running platform or
starts one in the background.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from jobrunner.errors import CredentialsError
from jobrunner.providers.http import EndpointResolver
from jobrunner.providers.ratelimit import UNLIMITED
from jobrunner.providers.replicate import ReplicateProvider
from jobrunner.providers.settings import ClientContext, normalize_base_url

TOKEN_ENV = "JOBRUNNER_LOCAL_TOKEN"
DATA_DIR = Path(".jobrunner") / "local"
TOKEN_FILE = "token"


class LocalProvider(ReplicateProvider):
    """Replicate v1 against the local platform (same wire, same behaviour, own name)."""

    name = "local"


def local_endpoint(root: Path, settings: Mapping[str, Any], env: Mapping[str, str]) -> EndpointResolver:
    """A resolver for (url, token), run on first use (it may start the platform and wait for it)."""
    url = settings.get("url")

    def configured() -> tuple[str, str | None]:
        token = env.get(TOKEN_ENV) or _read_token(root / DATA_DIR / TOKEN_FILE)
        if not token:
            raise CredentialsError(
                f"local: providers.local.url is set ({url}) but no platform token was found",
                hint=f"export {TOKEN_ENV}=<token> (the platform prints where it keeps it), or remove providers.local.url to let jobrunner start one",
            )
        return str(url), token

    def autostarted() -> tuple[str, str | None]:
        from jobrunner.local.autostart import ensure_platform

        handle = ensure_platform(root)
        return handle.url, handle.token

    return configured if url else autostarted


def build_client(ctx: ClientContext) -> LocalProvider:
    """The local client: `providers.local.url` (with its token) when set, else the workspace's
    platform, started on first use; no rate limit unless jobrunner.yaml sets one."""
    settings = dict(ctx.settings)
    if settings.get("url"):
        settings["url"] = normalize_base_url(str(settings["url"]), variable="providers.local.url")
    http = ctx.http(None, resolve_endpoint=local_endpoint(Path(ctx.root), settings, ctx.env), auth_header="Authorization",
                    auth_scheme="Bearer", credential_var="the local platform token", default_limits=UNLIMITED)
    return LocalProvider(http, schema_cache_dir=ctx.schema_cache_dir, sync_create=ctx.sync_create())


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


__all__ = ["LocalProvider", "TOKEN_ENV", "build_client", "local_endpoint"]
