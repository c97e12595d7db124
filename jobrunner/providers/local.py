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
from jobrunner.providers.replicate import ReplicateProvider

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


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


__all__ = ["LocalProvider", "TOKEN_ENV", "local_endpoint"]
