"""The lifecycle of auto-started local platforms: one per user and data directory, announced, self-stopping.

Without `providers.local.url`, the first request of a command that needs the platform calls
`ensure_platform(root, settings)`. It returns a `PlatformHandle(url, token, ...)` for the data
directory `data_dir_for(root, settings)` resolves:

1. `providers.local.data_dir` in jobrunner.yaml (relative to the workspace), when set;
2. else `<root>/.jobrunner/local` when it already holds a platform database (a workspace from before
   platforms were shared keeps its jobs reachable);
3. else the per-user `$JOBRUNNER_HOME/local` (default `$XDG_STATE_HOME/jobrunner`, else
   `~/.local/state/jobrunner`), so every workspace of a user shares one platform, as they would
   share one account at a hosted provider.

A running server recorded in the data directory's `server.json` that answers with the stored token
is reused; else `python -m jobrunner serve --data-dir DIR --idle-stop DURATION` is started detached
(own session, output in `serve.log`) and waited for, asking for the port it had last time (URLs it
handed out stay valid) and falling back to a free one. `started=True` on the handle tells the caller
to announce it, once. The server stops itself after `providers.local.idle_stop` (default 15 min)
without requests and without running jobs, and registers itself under `$JOBRUNNER_HOME/platforms/`
while it runs so `jobrunner serve --status` can list every running one.

A platform started by another jobrunner build (its `build` in `/_admin/info` differs from this
CLI's `jobrunner.local.build.build_fingerprint()`, or it is too old to report one) is never reused:
mixed code fails or, worse, serves old behaviour. When it runs no job it is stopped and started
again on the same port (`replaced=True`, announced as a restart); when it runs jobs the command
fails with a `ConfigError` instead of killing them.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobrunner.durations import DurationError, format_duration, parse_duration
from jobrunner.errors import ConfigError
from jobrunner.local.build import build_fingerprint
from jobrunner.local.runtime import RUNTIME_FILE, read_last_port, read_runtime
from jobrunner.local.security import read_token
from jobrunner.state.lock import pid_alive

HOME_ENV = "JOBRUNNER_HOME"
LEGACY_DATA_DIR = Path(".jobrunner") / "local"
LOG_FILE = "serve.log"
REGISTRY_DIR = "platforms"
START_TIMEOUT = 30.0
DEFAULT_IDLE_STOP = 15 * 60.0
_NEVER = ("never", "off", "0", "false", "no")
ALREADY_RUNNING = "a local platform is already running for"


@dataclass(frozen=True)
class PlatformHandle:
    url: str
    token: str
    pid: int | None = None
    data_dir: Path | None = None
    started: bool = False  # True when this call started it (the caller announces it)
    idle_stop: float | None = None
    replaced: bool = False  # started in place of a platform of another jobrunner build
    # What `/_admin/info` said when found (None: a platform too old to say); not its identity.
    build: str | None = field(default=None, compare=False)
    running_jobs: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RunningPlatform:
    """One entry of `jobrunner serve --status`."""

    pid: int
    url: str
    data_dir: Path
    started_at: float
    idle_stop: float | None
    build: str | None = None  # its build fingerprint; None for a platform too old to record one

    @property
    def stale(self) -> bool:
        """Started by another jobrunner build than this process's."""
        return self.build != build_fingerprint()


def user_home(env: Mapping[str, str] | None = None) -> Path:
    """The per-user jobrunner directory (shared platform data, the registry of running platforms)."""
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home).expanduser() / "jobrunner"


def data_dir_for(root: Path, settings: Mapping[str, Any] | None = None) -> Path:
    """The data directory of the platform a workspace uses (module docstring: configured, legacy, per user)."""
    configured = (settings or {}).get("data_dir")
    if configured:
        return (Path(root) / Path(str(configured)).expanduser()).resolve()
    legacy = Path(root) / LEGACY_DATA_DIR
    if (legacy / "platform.db").exists():
        return legacy.resolve()
    return (user_home() / "local").resolve()


def idle_stop_for(settings: Mapping[str, Any] | None) -> float | None:
    """Seconds of idleness after which an auto-started platform stops; None for never."""
    value = (settings or {}).get("idle_stop", DEFAULT_IDLE_STOP)
    if value is None or str(value).strip().lower() in _NEVER:
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ConfigError(
            f"jobrunner.yaml: providers.local.idle_stop: {exc}",
            hint="write a duration such as 15m or 1h, or `never` to keep the platform running",
        ) from None


def describe_idle(seconds: float | None) -> str:
    """`15 min`, `90 s`, `2 h`: how the announcement and `serve --status` spell an idle stop."""
    if seconds is None:
        return "never stops by itself"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def announcement(handle: PlatformHandle) -> str:
    where = handle.url.removeprefix("http://")
    if handle.replaced:
        return f"restarted the local platform on {where}: jobrunner changed since it started"
    if handle.idle_stop is None:
        return f"started the local platform on {where}; it keeps running until `jobrunner serve --stop`"
    return f"started the local platform on {where}; it stops after {describe_idle(handle.idle_stop)} idle"


def _answers(url: str, token: str, data_dir: Path) -> dict[str, Any] | None:
    """What `/_admin/info` says when `url` is a local platform serving `data_dir` and accepting `token`."""
    try:
        resp = httpx.get(f"{url}/_admin/info", headers={"Authorization": f"Bearer {token}"}, timeout=2.0)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    try:
        info = resp.json()
    except ValueError:
        return None
    if not isinstance(info, dict) or Path(str(info.get("data_dir", ""))) != data_dir.resolve():
        return None
    return info


def find_data_dir(data_dir: Path) -> PlatformHandle | None:
    """The platform serving `data_dir`, when one runs and answers with the stored token."""
    info = read_runtime(data_dir)
    token = read_token(data_dir)
    if info is None or token is None or not pid_alive(int(info["pid"])):
        return None
    said = _answers(info["url"], token, data_dir)
    if said is None:
        return None
    build, running = said.get("build"), said.get("running_jobs")
    return PlatformHandle(info["url"], token, int(info["pid"]), data_dir,
                          build=str(build) if build else None,
                          running_jobs=running if isinstance(running, int) else None)


def find_platform(root: Path, settings: Mapping[str, Any] | None = None) -> PlatformHandle | None:
    return find_data_dir(data_dir_for(root, settings))


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(64 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(data_dir: Path, port: int, idle_stop: float | None, cwd: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    command += ["--idle-stop", format_duration(idle_stop) if idle_stop else "never"]
    with open(data_dir / LOG_FILE, "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(cwd),
            start_new_session=True,  # detached: survives the CLI and its Ctrl-C
            close_fds=True,
        )


def ensure_platform(
    root: Path, settings: Mapping[str, Any] | None = None, *, timeout: float = START_TIMEOUT
) -> PlatformHandle:
    """The running platform for the workspace's data directory, started in the background when none answers."""
    data_dir = data_dir_for(root, settings)
    found = find_data_dir(data_dir)
    replaced = found is not None and retire_if_stale(found, data_dir)
    if found is not None and not replaced:
        return found
    idle_stop = idle_stop_for(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_FILE
    deadline = time.monotonic() + timeout
    last = read_last_port(data_dir)
    code: int | None = None
    for port in ([last, 0] if last else [0]):
        log_start = log_path.stat().st_size if log_path.exists() else 0
        process = _spawn(data_dir, port, idle_stop, Path(root))
        found, code = _wait_until_answering(data_dir, process, deadline)
        if found is not None:  # ours, or the one another CLI started a moment before (it announces that)
            ours = found.pid == process.pid
            return PlatformHandle(found.url, found.token, found.pid, data_dir, started=ours, idle_stop=idle_stop,
                                  replaced=ours and replaced, build=found.build, running_jobs=found.running_jobs)
        if code is None:
            raise ConfigError(
                f"the local platform did not answer within {timeout:g}s",
                hint=f"see {log_path}; stop it with `jobrunner serve --stop --data-dir {data_dir}`",
            )
        # It exited: another CLI may have won the race to start it (that server is as good as
        # ours, and that CLI announces it), or the port was taken (then try a free one).
        found = _wait_for_winner(data_dir, _log_since(log_path, log_start), deadline)
        if found is not None:
            return found
    raise ConfigError(
        f"the local platform exited during start-up (exit code {code})",
        hint=f"see {log_path}:\n{_log_tail(log_path)}",
    )


def _wait_until_answering(
    data_dir: Path, process: subprocess.Popen[bytes], deadline: float
) -> tuple[PlatformHandle | None, int | None]:
    """(handle, None) once it answers; (None, exit code) if it exits first; (None, None) at the deadline."""
    while time.monotonic() < deadline:
        found = find_data_dir(data_dir)
        if found is not None:
            return found, None
        code = process.poll()
        if code is not None:
            return None, code
        time.sleep(0.05)
    return None, None


def _wait_for_winner(data_dir: Path, said: str, deadline: float) -> PlatformHandle | None:
    """The platform another CLI is starting on `data_dir` right now, once it answers; None when our
    server failed for another reason (`said`: what it wrote to serve.log, e.g. a taken port)."""
    racing = ALREADY_RUNNING in said  # jobrunner.local.server.AlreadyRunning's words
    while True:
        found = find_data_dir(data_dir)
        if found is not None or not racing or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def retire_if_stale(found: PlatformHandle, data_dir: Path) -> bool:
    """Stop `found` when another jobrunner build started it and it runs no job (True: the caller
    starts a new one); False when it is this build's. Raises ConfigError when it runs jobs: they
    would be lost, and they are the user's to wait for or give up."""
    if found.build == build_fingerprint():
        return False
    in_flight = found.running_jobs if found.running_jobs is not None else _jobs_in_flight_on_disk(data_dir)
    if in_flight != 0:
        raise _stale_and_busy(found, data_dir, in_flight)
    # A job created between the check and the stop ends `failed` by the restart, as after any stop.
    # Only the server found is stopped: another CLI may have replaced it with a current one already.
    stop_data_dir(data_dir, only_pid=found.pid)
    return True


def _stale_and_busy(found: PlatformHandle, data_dir: Path, in_flight: int | None) -> ConfigError:
    # What to do is in the message itself: apply reports this per job, message only.
    jobs = ("may be running jobs (it is too old to say how many)" if in_flight is None
            else f"runs {in_flight} queued or running job{'s' if in_flight != 1 else ''}")
    return ConfigError(
        f"the local platform on {found.url.removeprefix('http://')} (pid {found.pid}) was started by another "
        f"jobrunner build and {jobs}, so it is neither used nor restarted: wait until they finish "
        "(`jobrunner serve --status` counts them) and run this command again (the idle platform then "
        "restarts on this build, same port, every job kept), or stop it now with "
        f"`jobrunner serve --stop --data-dir {data_dir}` (its queued and running jobs end failed) "
        "and run this command again",
    )


def _jobs_in_flight_on_disk(data_dir: Path) -> int | None:
    """For a platform too old to report `running_jobs`: the queued or running jobs its database
    records (both wires' tables; a table that build lacks counts 0), None when it cannot be read."""
    queries = ("SELECT count(*) FROM jobs WHERE status IN ('starting', 'processing')",
               "SELECT count(*) FROM emissary_training_jobs WHERE status IN ('Pending', 'Running')")
    try:
        conn = sqlite3.connect(f"{(data_dir / 'platform.db').resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    total = 0
    try:
        for query in queries:
            try:
                total += int(conn.execute(query).fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    return None
    finally:
        conn.close()
    return total


def stop_platform(root: Path, settings: Mapping[str, Any] | None = None, *, timeout: float = 10.0) -> bool:
    """Stop the platform of the workspace's data directory (settings default to its jobrunner.yaml's
    `providers.local`); False when none was running."""
    if settings is None:
        from jobrunner.workspace import load_config

        settings = load_config(Path(root)).providers.get("local")
    return stop_data_dir(data_dir_for(root, settings), timeout=timeout)


def stop_data_dir(data_dir: Path, *, timeout: float = 10.0, only_pid: int | None = None) -> bool:
    """Stop the server of `data_dir` (only when it is `only_pid`, if given); False when none ran."""
    info = read_runtime(data_dir)
    if info is None:
        return False
    pid = int(info["pid"])
    if only_pid is not None and pid != only_pid:
        return False
    if not pid_alive(pid):
        _forget_runtime(data_dir, pid)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid) and _is_running_child_or_other(pid):
        time.sleep(0.05)
    if pid_alive(pid) and _is_running_child_or_other(pid):
        os.kill(pid, signal.SIGKILL)
    _forget_runtime(data_dir, pid)
    return True


def _forget_runtime(data_dir: Path, pid: int) -> None:
    """Remove `server.json` if it still names `pid`: a successor another CLI started keeps its own."""
    info = read_runtime(data_dir)
    if info is not None and int(info["pid"]) == pid:
        (data_dir / RUNTIME_FILE).unlink(missing_ok=True)


def _is_running_child_or_other(pid: int) -> bool:
    """Reap the process if it is our own child (so a zombie does not look alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True  # not our child: `pid_alive` is the answer


# --- the registry of running platforms (`jobrunner serve --status`) -------------------------------


def _registry() -> Path:
    return user_home() / REGISTRY_DIR


def register(info: Mapping[str, Any], data_dir: Path, idle_stop: float | None) -> Callable[[], None]:
    """Record a running server under the per-user registry; returns the function that removes the entry."""
    entry = _registry() / f"{info['pid']}.json"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": info["pid"], "url": info["url"], "data_dir": str(data_dir),
                  "started_at": info.get("started_at", time.time()), "idle_stop": idle_stop,
                  "build": build_fingerprint()}  # the server's own: register runs in it
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only home only costs the `serve --status` listing, never the server

    def unregister() -> None:
        entry.unlink(missing_ok=True)

    return unregister


def running_platforms() -> list[RunningPlatform]:
    """Every registered platform whose process still serves its data directory; stale entries are removed."""
    found: list[RunningPlatform] = []
    for entry in sorted(_registry().glob("*.json")):
        record = _read_entry(entry)
        if record is None:
            entry.unlink(missing_ok=True)
            continue
        found.append(record)
    return sorted(found, key=lambda p: p.started_at)


def _read_entry(entry: Path) -> RunningPlatform | None:
    try:
        raw = json.loads(entry.read_text())
        pid, data_dir = int(raw["pid"]), Path(raw["data_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    runtime = read_runtime(data_dir)
    # the pid must still be alive and still be the server of that directory (pids are reused)
    if not pid_alive(pid) or runtime is None or int(runtime.get("pid", -1)) != pid:
        return None
    idle, build = raw.get("idle_stop"), raw.get("build")
    return RunningPlatform(pid, str(raw.get("url", runtime["url"])), data_dir,
                           float(raw.get("started_at") or 0.0), float(idle) if idle else None,
                           str(build) if build else None)
