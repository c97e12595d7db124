"""No command hangs on a provider that stops answering, and logs are never held whole.

The real CLI (as a separate process, like a user's shell or CI) runs against the real local
platform, reached through `tests/hostile_http.py`: a loopback server that relays to the platform,
or trickles a body one byte at a time after real headers, or accepts and never answers, or
refuses connections. Each case asserts the command ended within its documented bound, with a
message naming the provider and what to do, the right exit code, the lock released (the next
command takes it without a stale-lock warning) and state intact. Bounds are made small through
jobrunner.yaml and the environment so each test stays well under 30 s.

Which bound ended a command is read from its message (each names the bound that ran out), not
from the wall clock. The wall-clock checks are only against hangs: `HANG` is far above every
bound under test (interpreter start-up and a busy 2-core machine included) and below what the
command would take without that bound (per-attempt 30 s, per-request 300 s, or forever).
"""
from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import start_process
from tests.hostile_http import HostileServer, refused_url
from tests.reliability.harness import SLEEP, Platform, Result, clean_env, load_state, run_process
from tests.reliability.workloads import write_workload

# Each case waits out real deadlines against black-hole and trickling providers: slow tier.
pytestmark = pytest.mark.slow

# Planning runs its refresh before anything else: with two running jobs tracked, `plan`, `status`
# and `apply` all ask the provider first.
TRACKED = 2

# Seconds: a command still running after this did not stop at its bound (see the module docstring).
HANG = 25.0


def _config(root: Path, url: str, **settings: Any) -> None:
    lines = [f"    {k}: {v}\n" for k, v in settings.items()]
    (root / "jobrunner.yaml").write_text("providers:\n  local:\n" + f"    url: {url}\n" + "".join(lines),
                                         encoding="utf-8")


def _timed(args: list[str], root: Path, env: dict[str, str], limit: float = 60) -> tuple[float, Result]:
    started = time.monotonic()
    result = run_process(args, root, env, timeout=limit)
    return time.monotonic() - started, result


@pytest.fixture
def tracked(tmp_path: Path, platform: Platform) -> Iterator[tuple[Path, dict[str, str]]]:
    """A workspace whose state tracks TRACKED running sleep jobs on the local platform."""
    root = tmp_path / "ws"
    root.mkdir()
    _config(root, platform.url)
    write_workload(root, f"dl-{tmp_path.name}", predictions=0, trainings=0, slow=TRACKED, slow_seconds=300)
    env = clean_env(platform)
    first = run_process(["apply", "--auto-approve", "--no-wait"], root, env)
    assert first.code == 0, first.output
    yield root, env
    # Leave the platform's workers free for the next test.
    _config(root, platform.url)
    run_process(["destroy", "--auto-approve", "--no-wait"], root, env)


def _state_bytes(root: Path) -> bytes:
    return (root / ".jobrunner" / "state.json").read_bytes()


def _assert_lock_free(root: Path, env: dict[str, str]) -> None:
    """The next command that takes the state lock gets it at once, with no stale-lock takeover."""
    after = run_process(["state", "list"], root, env)
    assert after.code == 0, after.output
    from jobrunner.state.local_file import LocalFileStore

    assert LocalFileStore(root / ".jobrunner" / "state.json").lock_holder() is None


@pytest.mark.parametrize("command", [["plan"], ["status"]])
def test_plan_and_status_end_within_their_refresh_bound_against_a_trickle(
        tracked: tuple[Path, dict[str, str]], command: list[str]) -> None:
    root, env = tracked
    before = _state_bytes(root)
    with HostileServer("trickle", interval=1.0) as server:
        # Per-attempt and per-request bounds far away: only the refresh bound can end it.
        _config(root, server.url, timeout=30, deadline=300)
        took, result = _timed(command, root, {**env, "JOBRUNNER_REFRESH_TIMEOUT": "3s"})
    assert server.requests >= 1
    assert result.code == 1, result.output
    assert took < HANG, took  # the message below says the 3 s refresh bound is what ended it
    assert "Traceback" not in result.output
    assert "local: " in result.stderr
    assert "stopped at the deadline of JOBRUNNER_REFRESH_TIMEOUT=3s" in result.stderr
    assert "local is not answering" in result.stderr
    if command == ["status"]:
        assert "status --no-refresh" in result.stderr
    assert _state_bytes(root) == before


@pytest.mark.parametrize("mode", ["trickle", "blackhole", "refuse"])
def test_apply_timeout_covers_the_planning_refresh(tracked: tuple[Path, dict[str, str]], mode: str) -> None:
    root, env = tracked
    before = _state_bytes(root)
    with HostileServer("trickle" if mode == "refuse" else mode, interval=1.0) as server:  # type: ignore[arg-type]
        url = refused_url() if mode == "refuse" else server.url
        _config(root, url, timeout=30, deadline=300)
        took, result = _timed(["apply", "--auto-approve", "--timeout", "4s"], root, env)
    assert result.code == 1, result.output
    assert took < HANG, took  # the messages below name the bound that ended it
    assert "Traceback" not in result.output
    assert "Error: local: " in result.stderr
    if mode == "refuse":
        assert "could not connect" in result.stderr and url in result.stderr
    else:
        assert "stopped at the deadline of apply --timeout 4s" in result.stderr
        assert "jobs already running keep running" in result.stderr
    assert _state_bytes(root) == before
    _assert_lock_free(root, env)


def _wait_until(predicate: Any, limit: float = 20) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _running_ids(root: Path) -> set[str]:
    try:
        state = load_state(root)
    except (OSError, ValueError):
        return set()
    return {st["remote_id"] for st in state["addresses"].values() if st.get("remote_id")}


def _apply_in_background(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return start_process(["apply", "--auto-approve", *args], root, env)


def test_an_apply_whose_provider_vanishes_stops_waiting_and_a_later_apply_resumes(
        tmp_path: Path, platform: Platform) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    env = clean_env(platform)
    # Long enough to be still running when the second apply plans (it then waits for them).
    write_workload(root, f"vanish-{tmp_path.name}", predictions=0, trainings=0, slow=2, slow_seconds=15)
    with HostileServer("relay", upstream=platform.url) as server:
        _config(root, server.url, timeout=1, deadline=1.5, unreachable_after=2)
        proc = _apply_in_background(root, env)
        try:
            _wait_until(lambda: len(_running_ids(root)) == 2)
            created = _running_ids(root)
            server.set_mode("blackhole")
            vanished = time.monotonic()
            out, err = proc.communicate(timeout=40)
        finally:
            proc.kill()
        took = time.monotonic() - vanished
        # unreachable_after (2 s) + one request deadline (1.5 s) + a poll interval (3 s), at most;
        # without that bound it polls forever. The message names unreachable_after.
        assert took < HANG, took
        assert proc.returncode == 1, out + err
        assert "Traceback" not in out + err
        assert "local: stopped waiting for" in out + err
        assert "providers.local.unreachable_after is 2s" in out + err
        assert "run `jobrunner apply`" in out + err
        state = load_state(root)
        assert {st["status"] for st in state["addresses"].values()} <= {"pending", "running"}
        _assert_lock_free(root, env)

        server.set_mode("relay")
        again = run_process(["apply", "--auto-approve"], root, env, timeout=60)
    assert again.code == 0, again.output
    assert "stale" not in again.output
    assert _running_ids(root) == created  # resumed waiting on the same jobs: nothing created twice
    assert {st["status"] for st in load_state(root)["addresses"].values()} == {"succeeded"}, again.output


def test_an_apply_wait_timeout_against_a_trickling_provider_exits_6(tmp_path: Path, platform: Platform) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    env = clean_env(platform)
    write_workload(root, f"trickle-wait-{tmp_path.name}", predictions=0, trainings=0, slow=1, slow_seconds=60)
    with HostileServer("relay", upstream=platform.url, interval=1.0) as server:
        _config(root, server.url, timeout=30, deadline=300)
        started = time.monotonic()
        proc = _apply_in_background(root, env, "--timeout", "8s")
        try:
            _wait_until(lambda: len(_running_ids(root)) == 1)
            server.set_mode("trickle")
            out, err = proc.communicate(timeout=40)
        finally:
            proc.kill()
    took = time.monotonic() - started
    assert proc.returncode == 6, out + err
    assert took < HANG, took  # --timeout 8s ended it (exit 6 and the message); the job runs 60 s
    assert "Traceback" not in out + err
    assert "Wait timed out: 1 job(s) still running" in out + err
    _config(root, platform.url)
    run_process(["destroy", "--auto-approve", "--no-wait"], root, env)


def test_a_huge_log_is_shown_truncated_with_a_marker(tmp_path: Path, platform: Platform) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    env = clean_env(platform)
    _config(root, platform.url, max_log_bytes=20000)
    (root / "jobs.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: chatty}\nspec:\n  provider: local\n"
        f"  version: {SLEEP}\n  inputs:\n    - {{key: a, seconds: 0.2, log_lines: 10000}}\n", encoding="utf-8")
    applied = run_process(["apply", "--auto-approve"], root, env)
    assert applied.code == 0, applied.output
    shown = run_process(["logs", "PredictionBatch/chatty[a]"], root, env)
    assert shown.code == 0, shown.output
    first, rest = shown.stdout.split("\n", 1)
    assert first.startswith("[jobrunner: log truncated: the first ") and "bytes were not kept" in first
    assert re.match(r"\s*\d+%\|", rest) and "100%|##########| 10000/10000 [" in rest  # whole lines kept
    assert len(shown.stdout) < 21000
    state = (root / ".jobrunner" / "state.json").read_text(encoding="utf-8")
    assert "| 5000/10000 [" not in state

