"""The auto-started local platform as a user meets it: one per user, announced once, stopped when idle,
never started by commands that do not need it, listed by `jobrunner serve --status`.

Every test runs the real CLI in-process against a real detached `jobrunner serve`, with its own
`$JOBRUNNER_HOME` (tests/conftest.py), and stops what it started.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobrunner.local.autostart import (
    find_data_dir,
    running_platforms,
    stop_data_dir,
    user_home,
)
from jobrunner.state.lock import pid_alive
from tests.reliability.harness import ECHO, SLEEP, run_cli

pytestmark = pytest.mark.slow  # background platforms started, waited out and stopped (full suite only)

ANNOUNCED = "started the local platform on 127.0.0.1:"


def _workspace(root: Path, config: str = "{}\n", seconds: float | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "jobrunner.yaml").write_text(config)
    version, item = (SLEEP, f"{{key: a, seconds: {seconds}}}") if seconds is not None else (ECHO, "{key: a, text: hi}")
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
        f"  version: {version}\n  inputs:\n    - {item}\n")
    return root


def _alive(pid: int) -> bool:
    """The server is this process's child (the in-process CLI started it): reap it once it exits."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    return pid_alive(pid)


@pytest.fixture
def shared_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("JOBRUNNER_LOCAL_TOKEN", "REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    data_dir = (user_home() / "local").resolve()
    yield data_dir
    for platform in running_platforms():
        stop_data_dir(platform.data_dir)
    stop_data_dir(data_dir)


def test_two_workspaces_share_one_platform_announced_once(tmp_path: Path, shared_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _workspace(tmp_path / "one"), _workspace(tmp_path / "two")
    monkeypatch.chdir(first)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    assert r.stderr.count(ANNOUNCED) == 1 and "it stops after 15 min idle" in r.stderr, r.stderr
    assert ANNOUNCED not in r.stdout  # stdout stays the plan and report
    running = find_data_dir(shared_dir)
    assert running is not None
    monkeypatch.chdir(second)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0 and ANNOUNCED not in r.output, r.output  # reused, so not announced again
    assert find_data_dir(shared_dir) == running
    assert not (first / ".jobrunner" / "local").exists() and not (second / ".jobrunner" / "local").exists()
    r = run_cli("serve", "--status")
    assert r.code == 0, r.output
    assert "1 local platform running:" in r.stdout and f"pid {running.pid}" in r.stdout, r.stdout
    assert running.url in r.stdout and "stops after 15 min idle" in r.stdout and str(shared_dir) in r.stdout
    r = run_cli("serve", "--stop")
    assert r.code == 0 and "Stopped the local platform" in r.output, r.output
    r = run_cli("serve", "--status")
    assert r.stdout.strip() == "No local platform is running.", r.stdout


def test_commands_that_need_no_platform_start_none(tmp_path: Path, shared_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path / "ws")
    monkeypatch.chdir(root)
    assert run_cli("apply", "--auto-approve").code == 0
    assert stop_data_dir(shared_dir)
    for args in (["validate"], ["plan"], ["status", "--no-refresh"], ["status"], ["outputs", "PredictionBatch/b"],
                 ["state", "list"]):
        r = run_cli(*args)
        assert r.code == 0 and ANNOUNCED not in r.output, (args, r.output)
        assert find_data_dir(shared_dir) is None, args
    assert "No local platform is running." in run_cli("serve", "--status").stdout


def test_an_idle_platform_stops_itself_but_not_while_a_job_runs(tmp_path: Path, shared_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """idle_stop 1s, a job of 4s started with --no-wait: nobody polls it, yet the platform stays up
    until the job is done, then stops by itself within a few seconds."""
    root = _workspace(tmp_path / "ws", "providers:\n  local:\n    idle_stop: 1s\n", seconds=4)
    monkeypatch.chdir(root)
    started = time.monotonic()
    r = run_cli("apply", "--auto-approve", "--no-wait")
    assert r.code == 0 and "it stops after 1 s idle" in r.stderr, r.output
    handle = find_data_dir(shared_dir)
    assert handle is not None
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))  # idle for longer than idle_stop, but the job still runs
    assert find_data_dir(shared_dir) == handle
    # It stops by itself: within seconds normally; 60 s only bounds the wait on a busy machine.
    while _alive(handle.pid or 0) and time.monotonic() - started < 60:
        time.sleep(0.1)
    stopped_after = time.monotonic() - started
    assert find_data_dir(shared_dir) is None
    assert 4.0 <= stopped_after < 60, stopped_after
    assert "idle for 1s with no running jobs, stopping" in (shared_dir / "serve.log").read_text()
    assert not (shared_dir / "server.json").exists()
    assert running_platforms() == []  # it removed its own registry entry
    # the next command that needs it starts it again (same port) and finds the finished job
    r = run_cli("status")
    assert r.code == 0 and ANNOUNCED in r.stderr and "succeeded" in r.stdout, r.output
    again = find_data_dir(shared_dir)
    assert again is not None and again.url == handle.url


def test_a_configured_data_dir_gets_its_own_platform(tmp_path: Path, shared_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path / "ws", "providers:\n  local:\n    data_dir: .platform\n    idle_stop: never\n")
    monkeypatch.chdir(root)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0 and "keeps running until `jobrunner serve --stop`" in r.stderr, r.output
    assert find_data_dir((root / ".platform").resolve()) is not None
    assert find_data_dir(shared_dir) is None
    listed = run_cli("serve", "--status").stdout
    assert str((root / ".platform").resolve()) in listed and "never stops by itself" in listed, listed
    assert run_cli("serve", "--stop").code == 0
    assert find_data_dir((root / ".platform").resolve()) is None


def test_a_bad_idle_stop_is_a_config_error(tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path / "ws", "providers:\n  local:\n    idle_stop: soon\n")
    monkeypatch.chdir(root)
    r = run_cli("apply", "--auto-approve")
    assert r.code != 0 and "Traceback" not in r.output, r.output
    assert "providers.local.idle_stop: invalid duration 'soon'" in r.output and "30m" in r.output, r.output
    assert find_data_dir(shared_dir) is None


def test_serve_status_ignores_a_stale_registry_entry(tmp_path: Path, shared_dir: Path) -> None:
    registry = user_home() / "platforms"
    registry.mkdir(parents=True, exist_ok=True)
    (registry / "999999.json").write_text(
        json.dumps({"pid": 999999, "url": "http://127.0.0.1:1", "data_dir": str(tmp_path)})
    )
    r = run_cli("serve", "--status")
    assert r.stdout.strip() == "No local platform is running." and not (registry / "999999.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get("http://127.0.0.1:1/_admin/info", timeout=1)


def test_two_workspaces_starting_at_once_get_one_platform(tmp_path: Path, shared_dir: Path) -> None:
    """Two CLIs in two workspaces need the platform at the same moment: one starts it, the other
    waits for that one instead of failing or starting a second."""
    import subprocess
    import sys

    roots = [_workspace(tmp_path / name) for name in ("one", "two")]
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNNER_LOCAL_TOKEN"}
    procs = [subprocess.Popen([sys.executable, "-m", "jobrunner", "apply", "--auto-approve"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for root in roots]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert all(code == 0 for code, _, _ in results), results
    assert sum(err.count(ANNOUNCED) for _, _, err in results) == 1, results
    assert [p.data_dir for p in running_platforms()] == [shared_dir]
