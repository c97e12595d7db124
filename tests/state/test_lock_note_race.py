"""A command that finds the state lock held names its holder, even in the instant between the
holder taking the OS lock and writing its note.

Racing applies on a busy machine met exactly that instant: a loser read the note while it was
still empty and said "locked by another process (no holder information)". The instant is made
certain here instead of likely: the holder below takes the OS lock and writes nothing, and the
note appears (or the lock is released) from inside the waiting command's own pause, so no test
depends on how the machine schedules two processes.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobrunner.errors import StateLockedError
from jobrunner.state import lock as lock_module
from jobrunner.state.lock import FileLock, LockInfo


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A lock file whose OS lock another open file holds, with no note written yet."""
    path = tmp_path / "state.json.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield path, fd
    os.close(fd)


def _pause_doing(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[float]:
    """Make the lock's pause run `action` the first time (the holder's next move), with no real wait."""
    pauses: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        if not pauses:
            action()
        pauses.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(lock_module, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    return pauses


def test_a_note_written_just_after_the_lock_is_taken_names_the_holder(
        held: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    path, fd = held
    note = LockInfo.current("apply")
    pauses = _pause_doing(monkeypatch, lambda: os.pwrite(fd, note.to_text().encode(), 0))
    with pytest.raises(StateLockedError) as info:
        FileLock(path).acquire("apply")
    assert "locked by `jobrunner apply`" in str(info.value), info.value
    assert f"pid {os.getpid()}" in str(info.value)
    assert pauses  # it did look again


def test_a_lock_released_while_its_note_is_awaited_is_taken(
        held: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    path, fd = held
    _pause_doing(monkeypatch, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    lock = FileLock(path)
    lock.acquire("apply")
    try:
        assert LockInfo.parse(path.read_text()) is not None
        assert not lock.warnings  # an empty note is no stale lock
    finally:
        lock.release()


def test_a_holder_that_never_writes_a_note_is_reported_after_the_wait(
        held: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = held
    pauses = _pause_doing(monkeypatch, lambda: None)
    with pytest.raises(StateLockedError) as info:
        FileLock(path).acquire("apply")
    assert "another process (no holder information)" in str(info.value)
    assert sum(pauses) == pytest.approx(lock_module.NOTE_WAIT_S, abs=lock_module.NOTE_POLL_S * 1.01)


def test_a_held_lock_with_a_note_is_refused_at_once(
        held: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    path, fd = held
    os.pwrite(fd, LockInfo.current("destroy").to_text().encode(), 0)
    pauses = _pause_doing(monkeypatch, lambda: None)
    with pytest.raises(StateLockedError) as info:
        FileLock(path).acquire("apply")
    assert "locked by `jobrunner destroy`" in str(info.value)
    assert pauses == []  # the note was there: no pause
