"""`state.recovery.assign_found`: who owns which job after a lost state (pure, no provider)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobrunner.providers.base import SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.reconcile.matching import matches
from jobrunner.state.recovery import assign_found

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ECHO = "e" * 64


def job(jid: str, minutes: int, **inp: object) -> RemoteJob:
    return RemoteJob(id=jid, job_kind="prediction", status=SUCCEEDED, created_at=T0 + timedelta(minutes=minutes),
                     input=dict(inp), version=ECHO)


def req(**inp: object) -> CreateRequest:
    return CreateRequest(job_kind="prediction", body={"input": dict(inp)}, version=ECHO)


def test_one_row_takes_its_newest_job_and_keeps_the_older_as_earlier_attempts() -> None:
    got = assign_found([("B/x[a]", req(text="a")), ("B/x[b]", req(text="b"))],
                       [job("j2", 2, text="a"), job("j1", 1, text="a"), job("k", 3, text="zzz")], matches)
    assert got.found["B/x[a]"].job.id == "j2" and [j.id for j in got.found["B/x[a]"].earlier] == ["j1"]
    assert got.not_found == ["B/x[b]"] and not got.ambiguous


def test_identical_rows_get_jobs_in_creation_order_only_when_counts_match() -> None:
    rows = [(f"B/x[s{i}]", req(text="same")) for i in range(3)]
    jobs = [job("c", 3, text="same"), job("a", 1, text="same"), job("b", 2, text="same")]
    got = assign_found(rows, jobs, matches)
    assert {a: f.job.id for a, f in got.found.items()} == {"B/x[s0]": "a", "B/x[s1]": "b", "B/x[s2]": "c"}
    assert all(f.in_order for f in got.found.values())

    fewer = assign_found(rows, jobs[:2], matches)
    assert not fewer.found and len(fewer.ambiguous) == 1
    assert fewer.ambiguous[0].reason == "3 rows with one input, 2 matching jobs"
    ordered = assign_found(rows, jobs[:2], matches, in_order=True)
    assert {a: f.job.id for a, f in ordered.found.items()} == {"B/x[s0]": "a", "B/x[s1]": "c"}
    assert ordered.not_found == ["B/x[s2]"]


def test_a_job_that_matches_rows_with_different_inputs_is_never_guessed() -> None:
    # A `{$file}` input matches any uploaded value: one job could be either row's.
    rows = [("T/a", req(data={"$file": "a.txt"}, order=3)), ("T/b", req(data={"$file": "b.txt"}, order=3))]
    shared = assign_found(rows, [job("j1", 1, data="https://x/1", order=3)], matches)
    assert not shared.found and "different inputs" in shared.ambiguous[0].reason
    decided = assign_found(rows, [job("j1", 1, data="https://x/1", order=3)], matches, in_order=True)
    assert {a: f.job.id for a, f in decided.found.items()} == {"T/a": "j1"} and decided.not_found == ["T/b"]
