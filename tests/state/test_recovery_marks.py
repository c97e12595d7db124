"""`mark_recovery_lookups`: which addresses a restored state looks up before creating (pure)."""
from __future__ import annotations

from datetime import UTC, datetime

from jobrunner.resources import DesiredJob, JobKind
from jobrunner.state.model import AddressState, Intent, StateDoc
from jobrunner.state.recovery import lookup_window_start, mark_recovery_lookups

SINCE = "2026-01-01T00:00:00Z"


def job(name: str, fingerprint: str | None = "f1", kind: str = "prediction") -> DesiredJob:
    return DesiredJob(address=f"PredictionBatch/b[{name}]", resource_address="PredictionBatch/b",
                      job_kind=JobKind(kind), provider="local", file="jobs.yaml", request={}, fingerprint=fingerprint)


def tracked(name: str, fingerprint: str = "f1", status: str = "succeeded", **extra) -> AddressState:
    return AddressState(address=f"PredictionBatch/b[{name}]", kind="PredictionBatch", job_kind="prediction",
                        provider="local", file="jobs.yaml", fingerprint=fingerprint, remote_id=f"r-{name}",
                        status=status, attempts=1, **extra)


def test_only_jobs_the_state_may_lack_get_an_intent_dated_from_the_recovery() -> None:
    doc = StateDoc(recovered_at=SINCE)
    pending = Intent(fingerprint="f1", attempt=1, created_at="2026-02-01T00:00:00Z", request_digest="d")
    for st in (tracked("done"), tracked("changed", fingerprint="f0"), tracked("failed", status="failed"),
               tracked("running", status="running"), tracked("pending", intent=pending)):
        doc.addresses[st.address] = st
    desired = [job(n) for n in ("done", "changed", "failed", "running", "pending", "new")]
    desired += [job("unknown", fingerprint=None), job("model", kind="model")]
    marks = mark_recovery_lookups(doc, desired, whole_workspace=False)
    assert sorted(marks.addresses) == ["PredictionBatch/b[changed]", "PredictionBatch/b[failed]",
                                       "PredictionBatch/b[new]"]
    new = doc.addresses["PredictionBatch/b[new]"]
    assert new.kind == "PredictionBatch" and new.remote_id is None
    assert (new.intent.fingerprint, new.intent.attempt, new.intent.created_at) == ("f1", 1, SINCE)
    assert doc.addresses["PredictionBatch/b[failed]"].intent.attempt == 2  # a retry may have run meanwhile
    assert doc.addresses["PredictionBatch/b[changed]"].intent.attempt == 1  # a replacement starts again at 1
    assert doc.addresses["PredictionBatch/b[pending]"].intent is pending
    assert doc.addresses["PredictionBatch/b[done]"].intent is None
    assert doc.recovered_at == SINCE and not marks.cleared  # part of the workspace: the flag stays


def test_a_plan_of_the_whole_workspace_clears_the_flag_and_nothing_happens_without_it() -> None:
    doc = StateDoc(recovered_at=SINCE)
    assert mark_recovery_lookups(doc, [job("new")], whole_workspace=True).cleared
    assert doc.recovered_at is None and doc.addresses["PredictionBatch/b[new]"].intent is not None
    plain = StateDoc()
    assert mark_recovery_lookups(plain, [job("new")], whole_workspace=True).addresses == ()
    assert plain.addresses == {}


def test_the_flag_stays_while_a_jobs_spec_is_known_only_after_apply() -> None:
    """A batch on the output of a training found again has no fingerprint at plan time: it gets no
    intent, so the flag stays for the executor (which looks before every create while it is set)
    and for the next plan, which knows every spec."""
    doc = StateDoc(recovered_at=SINCE)
    marks = mark_recovery_lookups(doc, [job("new"), job("on-training", fingerprint=None)], whole_workspace=True)
    assert marks.addresses == ("PredictionBatch/b[new]",) and not marks.cleared
    assert doc.recovered_at == SINCE and "PredictionBatch/b[on-training]" not in doc.addresses
    assert mark_recovery_lookups(doc, [job("new"), job("on-training")], whole_workspace=True).cleared
    assert doc.recovered_at is None


def test_the_lookup_window_starts_at_the_backups_last_change_or_its_file_time_if_earlier() -> None:
    backup = StateDoc(addresses={"PredictionBatch/b[x]": tracked("x", updated_at="2026-03-01T10:00:00Z")})
    late = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    early = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert lookup_window_start(backup, late) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert lookup_window_start(backup, early) == early
    assert lookup_window_start(StateDoc(), late) == late
