"""A state restored from a backup looks its missing jobs up on the provider before creating them.

A backup (`state.json.bak`) lags the state it stood in for: jobs created after it was taken are
not in it. Planned from the backup as it is, those addresses would be plain creates, and the jobs
would run twice. So a restored state carries `StateDoc.recovered_at` (jobrunner state
restore-backup sets it): the instant from which the state may be missing jobs. While it is set,
planning gives every desired job that the state does not track at its current fingerprint a
pending intent dated `recovered_at` (`mark_recovery_lookups`). From there the ordinary
exactly-once machinery takes over: the planner looks each one up on the provider and adopts the
job it finds, and the executor looks once more before it sends any create.

Pure: works on the document in memory; the caller's next save records the intents.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from jobrunner.providers.base import ABORTED, CANCELED, FAILED, GONE
from jobrunner.resources import JOB_MODEL, DesiredJob
from jobrunner.state.model import AddressState, Intent, StateDoc
from jobrunner.timestamps import parse_rfc3339

# Statuses after which the same spec may run again (a retry): a retry made after the backup was
# taken is just as missing from it as a first create.
_ENDED_UNSUCCESSFULLY = frozenset({FAILED, ABORTED, CANCELED, GONE})


@dataclass(frozen=True)
class RecoveryMarks:
    """What `mark_recovery_lookups` did: the addresses now looked up, and whether the flag was cleared."""

    addresses: tuple[str, ...]
    cleared: bool


def needs_lookup(st: AddressState | None, job: DesiredJob) -> bool:
    """Could a job for `job` have been created after the backup without this state knowing it?"""
    if job.job_kind == JOB_MODEL or job.fingerprint is None:
        return False  # models are found by name; an unknown fingerprint cannot be created yet
    if st is None:
        return True
    if st.intent is not None:
        return False  # already looked up (and looked up again before any create)
    if not st.remote_id or st.fingerprint != job.fingerprint:
        return True
    return (st.status or "") in _ENDED_UNSUCCESSFULLY


def mark_recovery_lookups(doc: StateDoc, desired: Iterable[DesiredJob], *, whole_workspace: bool) -> RecoveryMarks:
    """While `doc.recovered_at` is set, turn every untracked desired job into a pending intent.

    `whole_workspace`: the desired jobs are every manifest of the workspace. Only then is the flag
    cleared (in memory, saved with the intents by the apply that follows): every address that
    could be missing has an intent of its own from here on, and intents are resolved one by one.
    A plan that is never applied saves nothing, so the flag stays.
    """
    since = doc.recovered_at
    if since is None:
        return RecoveryMarks((), False)
    marked = []
    for job in desired:
        st = doc.addresses.get(job.address)
        if not needs_lookup(st, job):
            continue
        if st is None:
            st = AddressState(address=job.address, kind=job.resource_address.split("/", 1)[0],
                              job_kind=job.job_kind, provider=job.provider, file=job.file)
            doc.addresses[job.address] = st
        same_spec = st.fingerprint == job.fingerprint and bool(st.remote_id)
        st.intent = Intent(fingerprint=job.fingerprint or "", attempt=(st.attempts + 1) if same_spec else 1,
                           created_at=since, request_digest="")
        marked.append(job.address)
    if whole_workspace:
        doc.recovered_at = None
    return RecoveryMarks(tuple(marked), whole_workspace)


def lookup_window_start(backup: StateDoc, backup_mtime: datetime) -> datetime:
    """From when jobs may be missing from a restored backup: its last recorded change, or the time
    the backup file was written, whichever is earlier (a backup copied or touched since keeps the
    earlier, safer bound)."""
    stamps = [backup_mtime]
    for st in backup.addresses.values():
        for text in (st.updated_at, st.intent.created_at if st.intent else None):
            parsed = parse_rfc3339(text) if text else None
            if parsed is not None:
                stamps.append(parsed)
    latest_recorded = max(stamps[1:], default=backup_mtime)
    return min(latest_recorded, backup_mtime)


__all__ = ["RecoveryMarks", "lookup_window_start", "mark_recovery_lookups", "needs_lookup"]
