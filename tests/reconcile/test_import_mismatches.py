"""`mismatches` (what `jobrunner import` says differs) agrees with `matches` (what lookups adopt).

Two functions with the same rules could drift apart: import would then refuse a job and name no
difference, or name one that lookups ignore. Hypothesis drives both with nested inputs, versions and
file markers; the deadline phrase of a job stopped by its own timeout is checked beside it.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.providers.base import ABORTED, CANCELED, SUCCEEDED, CreateRequest, JobStatus, RemoteJob
from jobrunner.reconcile.deadline import deadline_reason
from jobrunner.reconcile.matching import matches, mismatches

V1, V2 = "a" * 64, "b" * 64
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False),
                    st.sampled_from(["x", "y", "1"]), st.just({"$file": "data/a.txt"}))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)), max_leaves=8)
inputs = st.dictionaries(st.sampled_from(["prompt", "seed", "n", "file"]), values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(want=inputs, got=inputs, want_version=st.sampled_from([V1, V2]), got_version=st.sampled_from([V1, V2, None]))
def test_mismatches_is_empty_exactly_when_matches(
    want: dict, got: dict, want_version: str, got_version: str | None
) -> None:
    req = CreateRequest(job_kind="prediction", body={"input": want}, version=want_version)
    remote = RemoteJob(id="r", job_kind="prediction", status=SUCCEEDED, input=got, version=got_version)
    found = mismatches(remote, req)
    assert (found == []) == matches(remote, req), found
    assert all(isinstance(p, str) and ("input" in p or "version" in p) for p in found)


def test_mismatches_name_the_place_never_the_value() -> None:
    req = CreateRequest(job_kind="prediction", body={"input": {"prompt": "secret-ish", "opts": {"k": 1}}}, version=V1)
    remote = RemoteJob(id="r", job_kind="prediction", status=SUCCEEDED, version=V2,
                       input={"prompt": "other", "opts": {}})
    found = mismatches(remote, req)
    assert found == [f"version: the manifest runs {V1}, the remote job ran {V2}",
                     "input.prompt differs", "input.opts.k is missing on the remote job"]
    assert not any("secret-ish" in p or "other" in p for p in found)
    training = RemoteJob(id="r", job_kind="training", status=SUCCEEDED)
    assert mismatches(training, req) == ["kind: the manifest declares a prediction, the remote job is a training"]


def test_deadline_reason_only_for_a_job_its_timeout_stopped() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def job(status: str, ran: float, raw: str | None = None) -> RemoteJob:
        return RemoteJob(id="r", job_kind="prediction", status=JobStatus(status), raw_status=raw or status,
                         created_at=t0, completed_at=t0 + timedelta(seconds=ran))

    assert deadline_reason(job(CANCELED, 5.2), "5s") == (
        "its timeout of 5s (spec.timeout) ran out before it finished; raise spec.timeout to give it longer")
    assert deadline_reason(job(CANCELED, 2.0), "5s") is None  # canceled by hand before its deadline
    assert deadline_reason(job(CANCELED, 9.0), None) is None  # no timeout set
    assert deadline_reason(job(ABORTED, 0.0), "1m") is not None  # Replicate: deadline before it started
    assert deadline_reason(job("failed", 9.0), "5s") is None
    assert deadline_reason(job(CANCELED, 9.0), "soon") is None  # validate reports a bad timeout
