"""Job statuses are a closed set (`providers.base.JobStatus`, a StrEnum) that every file format
still carries as the bare word: a state file, its journal and the `--json` events written from
enum members are byte for byte what plain strings gave, and a word read back compares equal."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from jobrunner.providers.base import (
    ABORTED,
    CANCELED,
    FAILED,
    GONE,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    UNKNOWN,
    JobStatus,
    RemoteJob,
    job_status,
)
from jobrunner.render.json_events import JsonEvents
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, StateDoc

WORDS = ("pending", "running", "succeeded", "failed", "canceled", "aborted", "unknown", "gone")


def test_the_set_is_closed_and_its_members_are_their_words() -> None:
    assert [s.value for s in JobStatus] == list(WORDS)
    assert tuple(JobStatus) == (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, ABORTED, UNKNOWN, GONE)
    for status in JobStatus:
        assert status == status.value and f"{status}" == status.value and str(status) == status.value
        assert json.dumps(status) == json.dumps(status.value)
    assert set(TERMINAL) == {"succeeded", "failed", "canceled", "aborted", "gone"}
    assert "succeeded" in TERMINAL and "running" not in TERMINAL


@pytest.mark.parametrize("word", WORDS)
def test_a_word_read_back_is_its_member(word: str) -> None:
    assert job_status(word) is JobStatus(word)


@pytest.mark.parametrize("word", [None, "", "processing", "Succeeded", "deleted"])
def test_a_word_that_is_no_status_reads_as_unknown(word: str | None) -> None:
    assert job_status(word) is UNKNOWN


def _doc(status: str, history_status: str) -> StateDoc:
    doc = StateDoc(lineage="0f0f", serial=3)
    doc.addresses["Training/poems"] = AddressState(
        address="Training/poems", kind="Training", job_kind="training", provider="local", file="t.yaml",
        fingerprint="f1", remote_id="r2", status=status, attempts=2,
        history=[Attempt(remote_id="r1", fingerprint="f1", attempt=1, created_at="2026-01-02T11:30:00Z",
                         status=history_status),
                 Attempt(remote_id="r2", fingerprint="f1", attempt=2, created_at="2026-01-02T11:40:00Z",
                         status=status)])
    return doc


def _saved(tmp_path: Path, name: str, doc: StateDoc) -> tuple[bytes, bytes]:
    """The snapshot a whole save writes, then the journal record a save naming the address adds."""
    store = LocalFileStore(tmp_path / name / "state.json")
    store.save(doc)
    snapshot = store.path.read_bytes()
    doc.addresses["Training/poems"].attempts = 3  # a change for the journal record to carry
    store.save(doc, ["Training/poems"])
    return snapshot, store.journal_path.read_bytes() if store.journal_path.exists() else b""


def test_state_files_are_byte_identical_whether_statuses_are_members_or_words(tmp_path: Path) -> None:
    members = _saved(tmp_path, "members", _doc(SUCCEEDED, FAILED))
    words = _saved(tmp_path, "words", _doc("succeeded", "failed"))
    assert members[1], "the second save appended a journal record"
    assert members == words
    assert b'"status": "succeeded"' in members[0] or b'"status":"succeeded"' in members[0]
    # and what is read back compares equal to the members
    loaded = LocalFileStore(tmp_path / "members" / "state.json").load().addresses["Training/poems"]
    assert loaded.status == SUCCEEDED and loaded.history[0].status == FAILED


def _events(status: str) -> str:
    """The `--json` line for a status event, its timestamp blanked."""
    out = io.StringIO()
    JsonEvents("apply", out).event("Training/poems", status, "r1")
    return re.sub(r'"timestamp": "[^"]*"', '"timestamp": ""', out.getvalue())


@pytest.mark.parametrize("status", [PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, ABORTED, GONE, UNKNOWN])
def test_json_events_carry_the_bare_word(status: JobStatus) -> None:
    assert _events(status) == _events(status.value)
    assert json.loads(_events(status))["status"] == status.value


def test_a_remote_job_built_from_a_member_reports_the_word() -> None:
    job = RemoteJob(id="r1", job_kind="training", status=SUCCEEDED)
    assert job.terminal and json.dumps({"status": job.status}) == '{"status": "succeeded"}'


def test_job_kinds_are_a_closed_set_carried_as_words(tmp_path: Path) -> None:
    from jobrunner.fingerprint import canonical_json
    from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, JobKind

    assert tuple(JobKind) == (JOB_TRAINING, JOB_PREDICTION, JOB_MODEL, JOB_DEPLOYMENT)
    assert [k.value for k in JobKind] == ["training", "prediction", "model", "deployment"]
    # what a fingerprint digests, and what state stores, is the bare word
    assert canonical_json({"kind": JOB_PREDICTION}) == canonical_json({"kind": "prediction"})
    as_member, as_word = _doc(SUCCEEDED, FAILED), _doc("succeeded", "failed")
    as_member.addresses["Training/poems"].job_kind = JOB_TRAINING
    assert _saved(tmp_path, "m", as_member) == _saved(tmp_path, "w", as_word)
