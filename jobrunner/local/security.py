"""Secrets and exposure of the local platform: the API token, the webhook secret, bind checks.

The token is generated on first start and stored with mode 0600 in the data directory (unless one
is given); every request must carry it. The server binds loopback only unless `--allow-remote`, and
then an explicit token is mandatory.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path

TOKEN_FILE = "token"
WEBHOOK_SECRET_FILE = "webhook_secret"


class SecurityError(ValueError):
    """A configuration that would expose the platform unsafely."""


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = make()
    _write_private(path, value)
    return value


def load_or_create_token(data_dir: Path, given: str | None = None) -> str:
    """The platform token: `given` (stored for the local provider to read), else the stored one, else new."""
    path = data_dir / TOKEN_FILE
    if given:
        try:
            current = path.read_text().strip()
        except FileNotFoundError:
            current = None
        if current != given:
            _write_private(path, given)
        return given
    return _read_or_create(path, lambda: "jrl_" + secrets.token_urlsafe(32))


def read_token(data_dir: Path) -> str | None:
    try:
        return (data_dir / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_or_create_webhook_secret(data_dir: Path) -> str:
    """`whsec_<base64>`, the shape Replicate's `/v1/webhooks/default/secret` returns."""
    return _read_or_create(
        data_dir / WEBHOOK_SECRET_FILE, lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
    )


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison; a missing or empty credential never matches."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, token_given: bool) -> None:
    if is_loopback(host):
        return
    if not allow_remote:
        raise SecurityError(
            f"refusing to listen on {host}: the local platform binds loopback only "
            "(pass --allow-remote, with --token, to expose it)"
        )
    if not token_given:
        raise SecurityError("--allow-remote needs an explicit --token (or JOBRUNNER_LOCAL_TOKEN)")
