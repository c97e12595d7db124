"""Tokens, auth failures in each wire format's shape, loopback binding and the token file."""
from __future__ import annotations

import httpx
import pytest

from jobrunner.local.security import SecurityError, check_bind, load_or_create_token, read_token


def test_missing_and_wrong_tokens_get_replicates_401_bodies(live_platform):
    with httpx.Client(base_url=live_platform.url) as anon:
        resp = anon.get("/v1/predictions")
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json() == {
            "title": "Unauthenticated",
            "detail": "You did not pass an authentication token",
            "status": 401,
        }
        resp = anon.get("/v1/predictions", headers={"Authorization": "Bearer wrong"})
        assert resp.json() == {
            "title": "Unauthenticated",
            "detail": "You did not pass a valid authentication token",
            "status": 401,
        }
        assert anon.get("/v1/account", headers={"Authorization": f"Basic {live_platform.token}"}).status_code == 401


def test_bearer_and_token_schemes_both_work(live_platform):
    with httpx.Client(base_url=live_platform.url) as c:
        for scheme in ("Bearer", "Token", "bearer"):
            assert c.get("/v1/account", headers={"Authorization": f"{scheme} {live_platform.token}"}).status_code == 200


def test_emissary_requests_get_emissarys_401(live_platform):
    with httpx.Client(base_url=live_platform.url) as c:
        for headers in ({"X-API-Key": "wrong"}, {"X-API-Key": ""}):
            resp = c.get("/v1/projects", headers=headers)
            assert resp.status_code == 401
            assert resp.json() == {"status": 401, "error": "Unauthorized"}
        assert c.get("/v1/projects").status_code == 401


def test_admin_routes_need_the_token(live_platform):
    with httpx.Client(base_url=live_platform.url) as c:
        assert c.get("/_admin/faults").status_code == 401
        assert c.post("/_admin/faults", json={"latency_ms": 1}).status_code == 401
        assert c.get("/_admin/faults", headers={"X-API-Key": live_platform.token}).status_code == 200
        info = c.get("/_admin/info", headers={"Authorization": f"Bearer {live_platform.token}"}).json()
        assert info["data_dir"] == str(live_platform.data_dir.resolve())


def test_token_file_is_private_and_reused(tmp_path):
    token = load_or_create_token(tmp_path)
    assert token.startswith("jrl_") and len(token) > 30
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path) == token
    assert load_or_create_token(tmp_path, "given") == "given"
    assert read_token(tmp_path) == "given"
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600


def test_binding_rules():
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, allow_remote=False, token_given=False)
    with pytest.raises(SecurityError, match="loopback only"):
        check_bind("0.0.0.0", allow_remote=False, token_given=True)
    with pytest.raises(SecurityError, match="explicit --token"):
        check_bind("0.0.0.0", allow_remote=True, token_given=False)
    check_bind("0.0.0.0", allow_remote=True, token_given=True)


def test_serve_refuses_a_public_address_without_allow_remote(tmp_path):
    from click.testing import CliRunner

    from jobrunner.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)], standalone_mode=False)
    assert "loopback only" in str(result.exception)
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--allow-remote", "--data-dir", str(tmp_path)], standalone_mode=False
    )
    assert "explicit --token" in str(result.exception)
    result = CliRunner().invoke(cli, ["serve", "--error-rate", "2", "--data-dir", str(tmp_path)], standalone_mode=False)
    assert "between 0 and 1" in str(result.exception)


def test_serve_on_a_busy_port_is_a_clean_error(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "jobrunner", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"Error: could not listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
