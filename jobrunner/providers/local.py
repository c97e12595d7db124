"""The `local` provider: the Replicate wire client pointed at the embedded local platform.

Nothing is started until the first request: a plan whose jobs are all terminal never boots the
platform. Then the endpoint comes from `providers.local.url` in jobrunner.yaml when set (with the
token from `JOBRUNNER_LOCAL_TOKEN` or the platform's token file), else from
`jobrunner.local.autostart.ensure_platform(root, settings)`, which finds the running platform of
the data directory the workspace uses (per user unless `providers.local.data_dir` says otherwise)
or starts one in the background; a start (or the restart of a platform of another jobrunner
build) is announced once on stderr. When the platform cannot be used (it did not start, or another
build's platform is busy) every request of the command fails with that one error.

`platform_http` gives the same endpoint to a hosted provider whose wire the platform also speaks
(`providers.emissary.base_url: local`): Emissary then talks to the very platform `provider: local`
uses, authenticated with the platform's token instead of EMISSARY_CLIENT_API_KEY.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobrunner.errors import ConfigError, CredentialsError
from jobrunner.providers.adapters.local import LOCAL
from jobrunner.providers.http import EndpointResolver, HttpClient
from jobrunner.providers.ratelimit import UNLIMITED
from jobrunner.providers.replicate import ReplicateProvider
from jobrunner.providers.settings import ClientContext, normalize_base_url, provider_settings

TOKEN_ENV = "JOBRUNNER_LOCAL_TOKEN"
TOKEN_FILE = "token"


class LocalProvider(ReplicateProvider):
    """Replicate v1 against the local platform (same wire, same behaviour, own name)."""

    name = "local"


def local_endpoint(root: Path, settings: Mapping[str, Any], env: Mapping[str, str]) -> EndpointResolver:
    """A resolver for (url, token), run on first use (it may start the platform and wait for it)."""
    url = settings.get("url")

    def configured() -> tuple[str, str | None]:
        from jobrunner.local.autostart import LEGACY_DATA_DIR, data_dir_for

        # the data dir `jobrunner serve` defaults to here, then the workspace's own
        token = (env.get(TOKEN_ENV) or _read_token(data_dir_for(root, settings) / TOKEN_FILE)
                 or _read_token(root / LEGACY_DATA_DIR / TOKEN_FILE))
        if not token:
            raise CredentialsError(
                f"local: providers.local.url is set ({url}) but no platform token was found",
                hint=f"export {TOKEN_ENV}=<token> (the platform prints where it keeps it), "
                     "or remove providers.local.url to let jobrunner start one",
            )
        return str(url), token

    failed: list[ConfigError] = []

    def autostarted() -> tuple[str, str | None]:
        from jobrunner.local.autostart import announcement, ensure_platform

        if failed:  # the same answer for every job of this command, without starting or probing again
            raise failed[0]
        try:
            handle = ensure_platform(root, settings=settings)
        except ConfigError as exc:
            failed.append(exc)
            raise
        if handle.started:
            # stderr: stdout may be a plan, JSON or a piped status table
            print(announcement(handle), file=sys.stderr, flush=True)
        return handle.url, handle.token

    return configured if url else autostarted


def _platform_endpoint(ctx: ClientContext, settings: Mapping[str, Any]) -> EndpointResolver:
    """The resolver of the platform `providers.local` (`settings`) names: its `url`, else auto-start."""
    settings = dict(settings)
    if settings.get("url"):
        settings["url"] = normalize_base_url(str(settings["url"]), variable="providers.local.url")
    return local_endpoint(Path(ctx.root), settings, ctx.env)


def build_client(ctx: ClientContext) -> LocalProvider:
    """The local client: `providers.local.url` (with its token) when set, else the workspace's
    platform, started on first use; no rate limit unless jobrunner.yaml sets one."""
    http = ctx.http(None, resolve_endpoint=_platform_endpoint(ctx, ctx.settings), auth_header="Authorization",
                    auth_scheme="Bearer", credential_var="the local platform token", default_limits=UNLIMITED)
    return LocalProvider(http, schema_cache_dir=ctx.schema_cache_dir, sync_create=ctx.sync_create())


def platform_http(ctx: ClientContext) -> HttpClient:
    """A hosted provider's HttpClient aimed at the workspace's local platform (`ctx.targets_local_platform()`):
    the platform `provider: local` uses (`providers.local` settings: url, data_dir, idle_stop), found
    or started on first request exactly as for `local`, its token sent the provider's way (e.g. X-API-Key)."""
    ep = ctx.endpoint
    if ep is None:
        raise ConfigError(f"{ctx.name}: the provider's adapter names no endpoint")
    own = provider_settings(ctx.config, LocalProvider.name, LOCAL.settings_keys)
    return ctx.http(None, resolve_endpoint=_platform_endpoint(ctx, own), auth_header=ep.auth_header,
                    auth_scheme=ep.auth_scheme, credential_var="the local platform token", default_limits=UNLIMITED)


def platform_data_dir(root: Path) -> Path:
    """The data directory `jobrunner serve` defaults to in workspace `root`: the one auto-start
    uses (providers.local.data_dir, a legacy `.jobrunner/local`, else the per-user one)."""
    from jobrunner.local.autostart import data_dir_for
    from jobrunner.workspace import load_config

    return data_dir_for(root, load_config(root).providers.get(LocalProvider.name))


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


__all__ = ["TOKEN_ENV", "LocalProvider", "build_client", "local_endpoint", "platform_data_dir", "platform_http"]
