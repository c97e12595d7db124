"""The state lock of a local state file: an OS lock plus a note saying who holds it.

The OS lock (`fcntl.flock` on `<state>.lock`) is what excludes: the kernel releases it when its
holder exits, even on `kill -9`, so a crashed apply never leaves the workspace stuck. The holder
note (JSON written into the same file: host, pid, user, CI run, command, start time) is only there
to explain who is in the way, and to recognise a note left behind:

- a note from this host whose lock is free: its holder died; the lock is taken over, with a warning;
- a note from another host (a shared directory, or a `.jobrunner/` restored from a CI cache): we
  cannot see that process, so we refuse, give its age, and name `jobrunner state unlock` to free it.

The lock file is truncated, never deleted, on release: deleting it would let two processes lock two
different files of the same name.

The holder writes its note just after it takes the OS lock, so a command that finds the lock held
may read the note in between, empty. It then looks again for a moment (`NOTE_WAIT_S`) before
saying it cannot tell who holds the lock: racing applies each name the winner.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobrunner.errors import StateError, StateLockedError
from jobrunner.timestamps import parse_rfc3339

log = logging.getLogger("jobrunner.state")

# CI systems' run identifiers, most specific first.
CI_RUN_VARS = ("GITHUB_RUN_ID", "CI_JOB_ID", "CI_PIPELINE_ID", "BUILD_BUILDID", "BUILDKITE_BUILD_ID")

# How long a held lock's empty note is read again before "no holder information" (seconds): the
# holder writes it right after locking, but a busy machine may pause it in between.
NOTE_WAIT_S = 2.0
NOTE_POLL_S = 0.02


def _now() -> datetime:
    return datetime.now(UTC)


def current_user() -> str:
    """Who runs this process, for lock holders (the uid where there is no passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): not worth failing a lock over
        return str(os.getuid())


def ci_run_id(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    for var in CI_RUN_VARS:
        if env.get(var):
            return f"{var}={env[var]}"
    return None


def pid_alive(pid: int) -> bool:
    """Is a process with this pid running on this host?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{m:02d}m"
    return f"{hours // 24}d{hours % 24}h"


@dataclass
class LockInfo:
    """Who holds (or held) a lock."""

    id: str
    host: str
    pid: int
    user: str
    command: str
    started_at: str  # RFC 3339 UTC
    ci_run: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def current(cls, command: str) -> LockInfo:
        return cls(
            id=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            user=current_user(),
            command=command,
            started_at=_now().isoformat(timespec="seconds"),
            ci_run=ci_run_id(),
        )

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        """The note in a lock file; None when empty or unreadable (a note is only advice)."""
        if not text.strip():
            return None
        try:
            data = json.loads(text)
            return cls(
                id=str(data.get("id", "")),
                host=str(data["host"]),
                pid=int(data["pid"]),
                user=str(data.get("user", "?")),
                command=str(data.get("command", "?")),
                started_at=str(data.get("started_at", "")),
                ci_run=data.get("ci_run"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def to_text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    def age_seconds(self, now: datetime | None = None) -> float:
        started = parse_rfc3339(self.started_at)
        if started is None:
            return 0.0
        return ((now or _now()) - started).total_seconds()

    def describe(self, now: datetime | None = None) -> str:
        ci = f", CI run {self.ci_run}" if self.ci_run else ""
        return (
            f"`jobrunner {self.command}` by {self.user}@{self.host} (pid {self.pid}{ci}), "
            f"started {self.started_at}, {human_age(self.age_seconds(now))} ago"
        )

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()


class FileLock:
    """An exclusive, non-blocking lock on `path` with a holder note; see the module docstring."""

    def __init__(self, path: Path, *, what: str = "state") -> None:
        self.path = Path(path)
        self.what = what
        self.warnings: list[str] = []
        self._fd: int | None = None
        self.info: LockInfo | None = None

    # -- acquiring -------------------------------------------------------------------------

    def acquire(self, command: str) -> None:
        if self._fd is not None:
            raise StateError(f"the {self.what} lock {self.path} is already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock_or_raise(fd)
            previous = LockInfo.parse(_read_fd(fd))
            if previous is not None:
                if not previous.on_this_host:
                    raise self._foreign_error(previous)
                why = "is no longer running" if not pid_alive(previous.pid) else "no longer holds it"
                self._warn(
                    f"took over a stale {self.what} lock: {previous.describe()}; process {previous.pid} {why}"
                )
            info = LockInfo.current(command)
            _write_fd(fd, info.to_text())
        except BaseException:
            os.close(fd)  # closing releases the flock too
            raise
        self._fd = fd
        self.info = info

    def _lock_or_raise(self, fd: int) -> None:
        """Take the OS lock on `fd`, or raise naming its holder (see NOTE_WAIT_S for the retry)."""
        note_due = time.monotonic() + NOTE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {self.path}: {exc.strerror}") from None
            info = LockInfo.parse(_read_fd(fd))
            if info is not None or time.monotonic() >= note_due:
                raise self._held_error(info)
            time.sleep(NOTE_POLL_S)  # the holder is between locking and writing its note (or releasing)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _write_fd(fd, "")
        except OSError:
            pass  # the note is advice only; the OS lock is released by close either way
        finally:
            os.close(fd)
            self.info = None

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator[None]:
        self.acquire(command)
        try:
            yield
        finally:
            self.release()

    # -- unlocking somebody else's lock ------------------------------------------------------

    def holder(self) -> LockInfo | None:
        """The note in the lock file (who holds or last held it), if any."""
        try:
            return LockInfo.parse(self.path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return None

    def force_release(self, force: bool = False) -> str:
        """Free a lock left behind; return a sentence saying what was done.

        A lock whose OS lock is free only loses its note. One still held by a live process on this
        host is refused unless `force`: then the lock file is removed, so the next command locks a
        new file (the running holder is no longer excluded: that is what force means).
        """
        if not self.path.exists():
            return f"the {self.what} is not locked"
        fd = os.open(self.path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = LockInfo.parse(_read_fd(fd))
                if not force:
                    err = self._held_error(info)
                    err.hint = (
                        "the holder is still running; wait for it or stop it. "
                        "`jobrunner state unlock --force` breaks the lock anyway (risking concurrent writes)"
                    )
                    raise err from None
                self.path.unlink(missing_ok=True)
                who = info.describe() if info else "an unknown process"
                return f"broke the {self.what} lock held by {who}"
            info = LockInfo.parse(_read_fd(fd))
            _write_fd(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if info is None:
            return f"the {self.what} is not locked"
        return f"removed the {self.what} lock left by {info.describe()}"

    # -- messages ------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        # Kept for the CLI, and logged: without logging configured, Python prints warnings to stderr.
        self.warnings.append(message)
        log.warning("Warning: %s", message)

    def _held_error(self, info: LockInfo | None) -> StateLockedError:
        if info is None:
            who = "another process (no holder information)"
        else:
            who = info.describe()
            if info.on_this_host and not pid_alive(info.pid):
                who += " (that process has exited; a child process may have inherited the lock)"
        return StateLockedError(
            f"the {self.what} is locked by {who}",
            hint=f"wait for it to finish; lock file: {self.path}",
        )

    def _foreign_error(self, info: LockInfo) -> StateLockedError:
        return StateLockedError(
            f"the {self.what} is locked by {info.describe()}; that host is not this one, so jobrunner "
            "cannot tell whether it is still running",
            hint=(
                "if that run has ended (e.g. a cancelled CI job), free the lock with `jobrunner state unlock`"
            ),
        )


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _write_fd(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if text:
        os.write(fd, text.encode("utf-8"))
    os.fsync(fd)


__all__ = ["CI_RUN_VARS", "FileLock", "LockInfo", "ci_run_id", "current_user", "human_age", "pid_alive"]
