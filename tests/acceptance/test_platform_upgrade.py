"""An auto-started local platform meets an upgraded jobrunner: replaced when idle, never killed under its jobs.

An upgrade is simulated with the documented test hook `JOBRUNNER_BUILD_FINGERPRINT`: the platform
is started under one value (the detached server inherits it) and the CLI then runs under another.
Every test runs the real CLI in-process against a real detached `jobrunner serve`, with its own
`$JOBRUNNER_HOME` (tests/conftest.py), and stops what it started.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobrunner.errors import ConfigError
from jobrunner.local.autostart import (
    PlatformHandle,
    ensure_platform,
    find_data_dir,
    retire_if_stale,
    running_platforms,
    stop_data_dir,
    user_home,
)
from jobrunner.local.build import FINGERPRINT_ENV
from jobrunner.state.lock import pid_alive
from tests.reliability.harness import ECHO, SLEEP, run_cli

pytestmark = pytest.mark.slow  # platform processes restarted (full suite only)

STARTED = "started the local platform on"
RESTARTED = "restarted the local platform on {where}: jobrunner changed since it started"


def _workspace(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "jobrunner.yaml").write_text("{}\n")
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  inputs:\n    - {{key: a, text: {text}}}\n")
    return root


@pytest.fixture
def shared_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("JOBRUNNER_LOCAL_TOKEN", "REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(FINGERPRINT_ENV, "build-a")
    data_dir = (user_home() / "local").resolve()
    yield data_dir
    for platform in running_platforms():
        stop_data_dir(platform.data_dir)
    stop_data_dir(data_dir)


def _client(handle: PlatformHandle) -> httpx.Client:
    return httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {handle.token}"}, timeout=10.0)


def _running_sleep(handle: PlatformHandle) -> str:
    """A prediction of the sleep model, once the platform runs it."""
    with _client(handle) as client:
        job = client.post("/v1/predictions", json={"version": SLEEP, "input": {"seconds": 120}}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/v1/predictions/{job['id']}").json()["status"] != "processing":
            assert time.monotonic() < deadline, "the sleep prediction never started"
            time.sleep(0.05)
    return str(job["id"])


def test_an_idle_platform_of_another_build_is_restarted_on_its_port_with_its_jobs(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_workspace(tmp_path / "one", "before"))
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    assert STARTED in r.stderr
    old = find_data_dir(shared_dir)
    assert old is not None and old.build == "build-a"
    with _client(old) as client:
        [before] = client.get("/v1/predictions").json()["results"]

    monkeypatch.setenv(FINGERPRINT_ENV, "build-b")  # jobrunner was upgraded
    monkeypatch.chdir(_workspace(tmp_path / "two", "after"))
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    where = old.url.removeprefix("http://")
    assert r.stderr.count(RESTARTED.format(where=where)) == 1, r.stderr
    assert STARTED not in r.stderr.replace("restarted", "")

    new = find_data_dir(shared_dir)
    assert new is not None
    assert (new.url, new.build) == (old.url, "build-b") and new.pid != old.pid
    assert not pid_alive(old.pid) or old.pid == new.pid
    with _client(new) as client:  # the job made before the upgrade is still there, same URL
        again = client.get(f"/v1/predictions/{before['id']}").json()
        assert (again["status"], again["output"]) == ("succeeded", before["output"])
    r = run_cli("status")
    assert r.code == 0 and "restarted" not in r.stderr, r.output  # now the same build: reused quietly


def test_a_busy_platform_of_another_build_fails_the_command_and_keeps_its_jobs(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _workspace(tmp_path / "ws", "hi")
    old = ensure_platform(root)
    job_id = _running_sleep(old)

    monkeypatch.setenv(FINGERPRINT_ENV, "build-b")
    monkeypatch.chdir(root)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 1, r.output
    assert "Traceback" not in r.output
    where = old.url.removeprefix("http://")
    assert (f"the local platform on {where} (pid {old.pid}) was started by another jobrunner build "
            "and runs 1 queued or running job") in r.stderr, r.stderr
    assert "(`jobrunner serve --status` counts them) and run this command again" in r.stderr
    assert f"or stop it now with `jobrunner serve --stop --data-dir {shared_dir}`" in r.stderr

    still = find_data_dir(shared_dir)
    assert still is not None and still.pid == old.pid
    with _client(still) as client:
        assert client.get(f"/v1/predictions/{job_id}").json()["status"] == "processing"
        assert client.get("/v1/predictions").json()["results"][0]["id"] == job_id  # nothing was created
    r = run_cli("serve", "--status")
    [line] = [line for line in r.stdout.splitlines() if f"pid {old.pid}  {old.url}" in line]
    assert line.endswith("STALE: started by another jobrunner build, 1 job queued or running"), r.stdout
    monkeypatch.setenv(FINGERPRINT_ENV, "build-a")
    assert "STALE" not in run_cli("serve", "--status").stdout


def test_a_platform_too_old_to_report_its_build_is_judged_by_its_database(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _workspace(tmp_path / "ws", "hi")
    handle = ensure_platform(root)
    legacy = dataclasses.replace(handle, build=None, running_jobs=None)  # what an old server's info gives
    job_id = _running_sleep(handle)
    with pytest.raises(ConfigError, match="runs 1 queued or running job"):
        retire_if_stale(legacy, shared_dir)
    still = find_data_dir(shared_dir)
    assert still is not None and (still.pid, still.running_jobs) == (handle.pid, 1)
    with _client(handle) as client:
        client.post(f"/v1/predictions/{job_id}/cancel").raise_for_status()
    assert retire_if_stale(legacy, shared_dir) is True  # idle now: stopped for a restart
    assert find_data_dir(shared_dir) is None
    again = ensure_platform(root)
    assert again.started and not again.replaced and again.url == handle.url


def test_two_commands_meeting_a_stale_platform_restart_it_once(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = _workspace(tmp_path / "ws", "hi")
    old = ensure_platform(root)
    monkeypatch.setenv(FINGERPRINT_ENV, "build-b")
    with ThreadPoolExecutor(2) as pool:
        handles = list(pool.map(lambda _: ensure_platform(root), range(2)))
    assert {(h.url, h.pid) for h in handles} == {(old.url, handles[0].pid)} and handles[0].pid != old.pid
    # One of them started it and announces it, once (as a restart, unless the other had already
    # stopped the old one when it looked, so that it found none).
    [starter] = [h for h in handles if h.started]
    assert not any(h.replaced for h in handles if h is not starter)
    # A command still holding the old platform's handle stops only that one, never its successor.
    retire_if_stale(old, shared_dir)
    current = find_data_dir(shared_dir)
    assert current is not None and current.pid == handles[0].pid and current.build == "build-b"


@pytest.mark.slow  # copies the package and runs the CLI as separate processes
def test_editing_the_installed_package_restarts_the_idle_platform(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test hook: the CLI runs from a copy of the package, which is then edited, as an upgrade would."""
    import os
    import shutil

    import jobrunner
    from tests.reliability.harness import run_process

    site = tmp_path / "site"
    shutil.copytree(Path(jobrunner.__file__).parent, site / "jobrunner", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINT_ENV}
    env["PYTHONPATH"] = str(site)
    root = _workspace(tmp_path / "ws", "hi")
    r = run_process(["apply", "--auto-approve"], cwd=root, env=env)
    assert r.code == 0 and STARTED in r.stderr, r.output
    old = find_data_dir(shared_dir)
    assert old is not None and old.build is not None and old.build != "build-a"

    engine = site / "jobrunner" / "local" / "engines" / "__init__.py"
    engine.write_text(engine.read_text() + "\n# the upgrade\n")
    (root / "m.yaml").write_text((root / "m.yaml").read_text().replace("text: hi", "text: again"))
    r = run_process(["apply", "--auto-approve"], cwd=root, env=env)
    assert r.code == 0, r.output
    assert RESTARTED.format(where=old.url.removeprefix("http://")) in r.stderr, r.stderr
    new = find_data_dir(shared_dir)
    assert new is not None and new.url == old.url and new.pid != old.pid and new.build not in (None, old.build)
