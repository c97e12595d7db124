"""Auto-start of a workspace's platform (a real detached `jobrunner serve`), reuse, and stop."""
from __future__ import annotations

import os

import httpx
import pytest

from jobrunner.local.autostart import data_dir_for, ensure_platform, find_platform, stop_platform
from jobrunner.local.replicate.catalog import SLEEP_VERSION

pytestmark = pytest.mark.slow  # background platforms started and stopped (full suite only)


def test_ensure_platform_starts_reuses_and_stops(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("{}\n")
    assert find_platform(root) is None
    handle = ensure_platform(root)
    try:
        assert handle.url.startswith("http://127.0.0.1:")
        token_file = data_dir_for(root) / "token"
        assert handle.token == token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {handle.token}"}
        job = httpx.post(
            f"{handle.url}/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 0.2}}, headers=headers
        ).json()
        again = ensure_platform(root)
        assert (again.url, again.pid) == (handle.url, handle.pid)
        assert handle.pid != os.getpid()
        # the job runs in the platform, not in this process
        body = httpx.get(
            f"{handle.url}/v1/predictions/{job['id']}", headers={**headers, "Prefer": "wait=5"}
        ).json()
        assert body["status"] in ("starting", "processing", "succeeded")
    finally:
        assert stop_platform(root) is True
    assert find_platform(root) is None
    assert stop_platform(root) is False
    assert not (data_dir_for(root) / "server.json").exists()


def test_serve_stop_from_the_workspace(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from jobrunner.cli import cli

    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "jobrunner.yaml").write_text("{}\n")
    handle = ensure_platform(root)
    monkeypatch.chdir(root / "sub")  # the workspace is found from a subdirectory
    result = CliRunner().invoke(cli, ["serve", "--stop"])
    assert result.exit_code == 0, result.output
    assert "Stopped the local platform" in result.output
    assert find_platform(root) is None
    with __import__("pytest").raises(httpx.TransportError):
        httpx.get(f"{handle.url}/v1/account", headers={"Authorization": f"Bearer {handle.token}"}, timeout=2)
    result = CliRunner().invoke(cli, ["serve", "--stop"])
    assert "No local platform is running" in result.output


def test_a_restarted_platform_gets_its_old_port_back_or_a_free_one(tmp_path):
    import socket

    root = tmp_path / "ws"
    root.mkdir()
    first = ensure_platform(root)
    stop_platform(root)
    second = ensure_platform(root)
    try:
        assert second.url == first.url and second.pid != first.pid
    finally:
        stop_platform(root)
    port = int(first.url.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        third = ensure_platform(root)
        try:
            assert third.url != first.url
        finally:
            stop_platform(root)
