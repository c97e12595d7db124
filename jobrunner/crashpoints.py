"""Named crash points: deterministic `kill -9` of the running process, for the crash-consistency tests.

jobrunner promises that a re-run after `kill -9` anywhere in apply neither duplicates nor loses a
job, and that the state file is never left torn. To prove it at chosen moments rather than at
random ones, the reconciler and the state store call `crash_point("<name>")` at the instants that
matter (after the intent is saved and before the create is sent, after the create is answered and
before its id is saved, in the middle of a state write, ...).

The hook is inert unless the environment variable `JOBRUNNER_TEST_CRASH_AT` is set:

    JOBRUNNER_TEST_CRASH_AT=<point>[:<n>]

kills the process with SIGKILL (no cleanup, no `finally`, no flush: exactly what `kill -9` does)
the n-th time (default: the first) execution reaches `<point>`. `POINTS` lists the names and where
they are; docs/reliability.md describes the crash suite that uses them.
"""
from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "JOBRUNNER_TEST_CRASH_AT"

POINTS: dict[str, str] = {
    "apply.locked": "apply holds the state lock, before anything was planned or sent",
    "moves.saved": "apply saved the declared renames (moved list), nothing else was sent or saved yet",
    "create.intent_saved": "the intent is on disk, the create was not sent yet",
    "create.sent": "the provider answered the create, its id is not saved yet",
    "create.recorded": "the remote id is saved, waiting has not started",
    "create.lookup_found": "a re-run found the job of a pending intent on the provider, not recorded yet",
    "cancel.sent": "a cancel (destroy, removed address, replace) was accepted, state not updated yet",
    "wait.status_changed": "a polled status change is in memory, not saved yet",
    "wait.terminal": "a job's final status is known, not saved yet",
    "outputs.row_appended": "a batch item ended, its state is saved and its row appended to the output file",
    "outputs.before_write": "every job is done, batch output files not written yet",
    "state.backup_kept": "state write: the last-good copy is kept, the new file not written yet",
    "state.tmp_partial": "state write: half of the new document is in the temporary file",
    "state.tmp_written": "state write: the temporary file is complete and fsynced, not renamed yet",
    "state.renamed": "state write: the new file replaced the old one, directory not fsynced yet",
    "state.compacted": "state write: a new snapshot includes the journal, the journal is not removed yet",
    "journal.partial": "journal append: part of the record is in the journal (fsynced), the rest not written",
    "journal.appended": "journal append: the record is fsynced, the save not acknowledged yet",
}

_hits: dict[str, int] = {}
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return None
    name, _, count = spec.strip().partition(":")
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 1
    return name, max(1, n)


def armed(name: str) -> bool:
    """Is `name` the point this process is set to crash at (cheap check for costly preparations)?"""
    target = _target()
    return target is not None and target[0] == name


def crash_point(name: str) -> None:
    """SIGKILL this process if `JOBRUNNER_TEST_CRASH_AT` names `name` and this is its n-th hit."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV_VAR", "POINTS", "armed", "crash_point"]
