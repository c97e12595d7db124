"""Finding, starting and stopping the local platform of a workspace.

`ensure_platform(root)` returns a `PlatformHandle(url, token)` for `<root>/.jobrunner/local/`: the
running server recorded in `server.json` if it answers with the stored token, else a new
`python -m jobrunner serve --data-dir <root>/.jobrunner/local` started detached (its own session,
output in `serve.log`), waited for until it answers. It asks for the port it had last time (so
URLs the platform handed out stay valid) and falls back to a free one. Jobs run in that server, so
they outlive the CLI that started it. `stop_platform(root)` stops it (SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from jobrunner.errors import ConfigError
from jobrunner.local.security import read_token
from jobrunner.local.server import RUNTIME_FILE, read_last_port, read_runtime
from jobrunner.state.lock import pid_alive

DATA_DIR = Path(".jobrunner") / "local"
LOG_FILE = "serve.log"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class PlatformHandle:
    url: str
    token: str
    pid: int | None = None
    data_dir: Path | None = None


def data_dir_for(root: Path) -> Path:
    return Path(root) / DATA_DIR


def _answers(url: str, token: str, data_dir: Path) -> bool:
    """True when `url` is a local platform serving `data_dir` and accepting `token`."""
    try:
        resp = httpx.get(f"{url}/_admin/info", headers={"Authorization": f"Bearer {token}"}, timeout=2.0)
    except httpx.HTTPError:
        return False
    if resp.status_code != 200:
        return False
    try:
        served = Path(resp.json().get("data_dir", ""))
    except ValueError:
        return False
    return served == data_dir.resolve()


def find_platform(root: Path) -> PlatformHandle | None:
    data_dir = data_dir_for(root)
    info = read_runtime(data_dir)
    token = read_token(data_dir)
    if info is None or token is None or not pid_alive(int(info["pid"])):
        return None
    if not _answers(info["url"], token, data_dir):
        return None
    return PlatformHandle(info["url"], token, int(info["pid"]), data_dir)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ensure_platform(root: Path, *, timeout: float = START_TIMEOUT) -> PlatformHandle:
    """The workspace's running platform, started in the background when none answers."""
    found = find_platform(root)
    if found is not None:
        return found
    data_dir = data_dir_for(root)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_FILE
    deadline = time.monotonic() + timeout
    last = read_last_port(data_dir)
    ports = [last, 0] if last else [0]
    code: int | None = None
    for port in ports:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=str(root),
                start_new_session=True,  # detached: survives the CLI and its Ctrl-C
                close_fds=True,
            )
        while time.monotonic() < deadline:
            found = find_platform(root)
            if found is not None:
                return found
            code = process.poll()
            if code is not None:
                break
            time.sleep(0.05)
        else:
            raise ConfigError(
                f"the local platform did not answer within {timeout:g}s",
                hint=f"see {log_path}; stop it with `jobrunner serve --stop`",
            )
        # It exited: another CLI may have won the race to start it (that server is as good as
        # ours), or the port was taken (then try a free one).
        time.sleep(0.2)
        found = find_platform(root)
        if found is not None:
            return found
    raise ConfigError(
        f"the local platform exited during start-up (exit code {code})",
        hint=f"see {log_path}:\n{_log_tail(log_path)}",
    )


def stop_platform(root: Path, *, timeout: float = 10.0) -> bool:
    """Stop the workspace's platform; False when none was running."""
    data_dir = data_dir_for(root)
    return stop_data_dir(data_dir, timeout=timeout)


def stop_data_dir(data_dir: Path, *, timeout: float = 10.0) -> bool:
    info = read_runtime(data_dir)
    if info is None:
        return False
    pid = int(info["pid"])
    if not pid_alive(pid):
        (data_dir / RUNTIME_FILE).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid) and _is_running_child_or_other(pid):
        time.sleep(0.05)
    if pid_alive(pid) and _is_running_child_or_other(pid):
        os.kill(pid, signal.SIGKILL)
    (data_dir / RUNTIME_FILE).unlink(missing_ok=True)
    return True


def _is_running_child_or_other(pid: int) -> bool:
    """Reap the process if it is our own child (so a zombie does not look alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True  # not our child: `pid_alive` is the answer
