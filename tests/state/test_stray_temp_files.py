"""Temporary files that a crash in the middle of a state write left behind are swept away.

A real crash (SIGKILL at the `state.tmp_partial` point, in a separate process) leaves a torn
`.state.json.*.tmp`; the next process that takes the lock or saves removes it, but never a file
that some process still holds open or that is newer than the sweeping process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, StateDoc


def _doc() -> StateDoc:
    doc = StateDoc(lineage="L")
    doc.addresses["Training/a"] = AddressState(address="Training/a", kind="Training", job_kind="training",
                                               provider="local", file="jobs.yaml", status="succeeded")
    return doc


def _strays(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".state.json.*.tmp"))


def _age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def _crash_mid_write(state: Path) -> None:
    """Save once, then crash a second save halfway through its temporary file (kill -9)."""
    script = textwrap.dedent(f"""
        from jobrunner.state.local_file import LocalFileStore
        from jobrunner.state.model import StateDoc
        store = LocalFileStore({str(state)!r})
        doc = StateDoc(lineage="L")
        store.save(doc)
        import os
        os.environ["JOBRUNNER_TEST_CRASH_AT"] = "state.tmp_partial"
        store.save(doc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr


def test_a_crashed_write_leaves_a_temp_file_that_the_next_save_removes(tmp_path: Path) -> None:
    state = tmp_path / ".jobrunner" / "state.json"
    _crash_mid_write(state)
    strays = _strays(state.parent)
    assert len(strays) == 1, strays  # the torn temporary file the crash left
    _age(state.parent / strays[0])  # written before this process started, as after a real crash

    store = LocalFileStore(state)
    doc = store.load()
    assert doc.serial == 1  # the torn write never reached the state file
    store.save(doc)
    assert _strays(state.parent) == []
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.json", "state.json.bak"]
    assert store.load().serial == 2


def test_taking_the_lock_removes_stray_temp_files(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    store = LocalFileStore(state)
    store.save(_doc())
    stray = tmp_path / ".state.json.abc123.tmp"
    stray.write_text('{"format_version": 1, "ser')
    _age(stray)
    backup_stray = tmp_path / ".state.json.bak.99999.tmp"  # a crashed backup link of another process
    backup_stray.write_text("{}")
    _age(backup_stray)
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    _age(other)

    with LocalFileStore(state).lock("apply"):
        assert _strays(tmp_path) == []
    assert other.exists() and state.exists()


def test_a_temp_file_newer_than_this_process_is_kept(tmp_path: Path) -> None:
    # Made after this process started: it may be this process's own write in progress.
    state = tmp_path / "state.json"
    fresh = tmp_path / ".state.json.fresh.tmp"
    fresh.write_text("{}")
    with LocalFileStore(state).lock("apply"):
        pass
    LocalFileStore(state).save(_doc())
    assert fresh.exists()


def test_a_temp_file_held_open_by_another_process_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    held = tmp_path / ".state.json.held.tmp"
    held.write_text("{}")
    _age(held)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys; f = open({str(held)!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        store = LocalFileStore(state)
        store.save(_doc())
        assert held.exists()
        assert store.sweep_temporary_files() == []
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # once nobody holds it, the next sweep removes it
    assert LocalFileStore(state).sweep_temporary_files() == [held]
    assert not held.exists()
