"""The apply engine against a small in-memory provider: ordering, exactly-once, retries, waits.

The fake provider keeps real job records (ids, creation times, inputs) and moves each job from
pending to its final status after a few polls, so the executor's own logic (intents saved before
creates, lookups after ambiguous failures, retries, dependency skips, deadlines) is what is tested.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobrunner.errors import TransportError
from jobrunner.plan_types import CREATE, RETRY, WAIT, Action, Plan, PlannedChange, Policy
from jobrunner.providers.base import CANCELED, FAILED, PENDING, SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.reconcile.context import ApplyOptions
from jobrunner.reconcile.executor import Executor
from jobrunner.reconcile.report import O_FAILED, O_RUNNING, O_SKIPPED, O_SUCCEEDED
from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.reconcile.timeutil import to_rfc3339
from jobrunner.reconcile.waiter import Waiter
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob, Resource
from jobrunner.state.model import AddressState, Intent, StateDoc

VERSION = "a" * 64


class FakeProvider:
    name = "local"

    def __init__(self, *, polls_to_finish: int = 1) -> None:
        self.jobs: dict[str, RemoteJob] = {}
        self.polls: dict[str, int] = {}
        self.polls_to_finish = polls_to_finish
        self.creates = 0
        self.drop_next_create_after_commit = 0
        self.cancels: list[str] = []
        self._ids = itertools.count(1)

    async def create(self, req: CreateRequest) -> RemoteJob:
        self.creates += 1
        rid = f"job{next(self._ids)}"
        inp = dict(req.body.get("input") or {})
        final = FAILED if inp.get("fail") else SUCCEEDED
        job = RemoteJob(id=rid, job_kind=req.job_kind, status=PENDING, created_at=datetime.now(UTC),
                        input=inp, model=req.model, version=req.version)
        job.extra["final"] = final
        self.jobs[rid] = job
        self.polls[rid] = 0
        if self.drop_next_create_after_commit:
            self.drop_next_create_after_commit -= 1
            raise TransportError("connection dropped", provider="local")
        return RemoteJob(**{**job.__dict__, "extra": dict(job.extra)})

    def _advance(self, rid: str) -> RemoteJob:
        job = self.jobs[rid]
        self.polls[rid] += 1
        if job.status == PENDING and self.polls[rid] >= self.polls_to_finish:
            job.status = job.extra["final"]
            if job.status == SUCCEEDED:
                job.output = ({"version": f"me/poems:{'b' * 64}", "weights": "file:///w"}
                              if job.job_kind == JOB_TRAINING else f"out:{job.input}")
            else:
                job.error = "boom"
        return RemoteJob(**{**job.__dict__, "extra": dict(job.extra)})

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        return self._advance(remote_id)

    async def refresh_many(self, job_kind: str, ids: set[str], since: datetime, *,
                           project_id: str | None = None) -> dict[str, RemoteJob]:
        """The `local` adapter says its client refreshes in bulk: each known job, as `get` sees it."""
        return {rid: await self.get(job_kind, rid, project_id=project_id) for rid in sorted(ids) if rid in self.jobs}

    async def cancel(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> None:
        self.cancels.append(remote_id)
        self.jobs[remote_id].status = CANCELED

    async def list(self, job_kind: str, *, since: datetime | None = None, project_id: str | None = None):
        for job in sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True):
            if job.job_kind == job_kind and (since is None or job.created_at >= since):
                yield job

    async def upload(self, path: str, *, project_id: str | None = None) -> str:
        return f"file://{path}"

    async def get_model(self, owner: str, name: str) -> dict[str, Any] | None:
        return None

    async def create_model(self, owner: str, name: str, visibility: str, hardware: str, description: str | None):
        return {"owner": owner, "name": name}


class Pool:
    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider

    def get(self, name: str) -> FakeProvider:
        return self.provider


class RecordingStore:
    """Keeps a snapshot of every save, to check what was on disk at each moment."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []

    def save(self, doc: StateDoc) -> None:
        doc.serial += 1
        self.snapshots.append(doc.to_json())


def training(name: str = "t", *, input: dict | None = None, retry: int = 1, timeout: str | None = None):
    spec: dict[str, Any] = {"provider": "local", "model": "jobrunner/ngram", "version": VERSION,
                            "destination": "me/poems", "input": input or {"order": 3},
                            "retry": {"max_attempts": retry}}
    if timeout:
        spec["timeout"] = timeout
    res = Resource(kind="Training", name=name, spec=spec, file="t.yaml", line=1)
    job = DesiredJob(address=res.address, resource_address=res.address, job_kind=JOB_TRAINING, provider="local",
                     file="t.yaml", request={"provider": "local", "kind": "training", "model": "jobrunner/ngram",
                                             "version": VERSION, "destination": "me/poems",
                                             "input": spec["input"]},
                     fingerprint="fp-" + name + str(sorted(spec["input"].items())))
    return res, job


def batch_item(upstream: str, key: str, fingerprint: str | None, version: str | None = None):
    res = Resource(
        kind="PredictionBatch",
        name="b",
        spec={"provider": "local", "version": "${Training.t.output.version}"},
        file="b.yaml",
        line=1,
    )
    job = DesiredJob(address=f"PredictionBatch/b[{key}]", resource_address=res.address, job_kind=JOB_PREDICTION,
                     provider="local", file="b.yaml",
                     request={"provider": "local", "kind": "prediction", "model": None,
                              "version": version or "${Training.t.output.version}", "input": {"prompt": key}},
                     fingerprint=fingerprint, depends_on=(upstream,))
    return res, job


def with_policies(changes, resources):
    """As planning does: each change carries its resource's retry, timeout and lifecycle."""
    specs = {r.address: r.spec for r in resources}
    return [dc_replace(c, policy=Policy.of(specs.get(c.job.resource_address))) if c.job is not None else c
            for c in changes]


def run(changes, resources, desired, *, provider=None, doc=None, options=None, expand=None):
    changes = with_policies(changes, resources)
    provider = provider or FakeProvider()
    doc = doc or StateDoc(lineage="L")
    store = RecordingStore()

    class Silent:
        def event(self, *a: Any) -> None: ...
        def note(self, *a: Any) -> None: ...
        def close(self) -> None: ...

    async def go():
        pool = Pool(provider)
        ex = Executor(Plan(changes=changes), desired=desired, resources=resources, writer=StateWriter(store, doc),
                      pool=pool, root=Path("/nonexistent"), expand=expand or (lambda: desired), progress=Silent(),
                      options=options or ApplyOptions(), waiter=Waiter(pool, min_interval=0.01, max_interval=0.02))
        return await ex.run()

    report = asyncio.run(go())
    return report, doc, provider, store


def change(job: DesiredJob, action: Action = CREATE, prior=None) -> PlannedChange:
    return PlannedChange(job.address, action, "test", job, prior, None, job.fingerprint)


def test_create_waits_and_records_outputs_with_intent_saved_before_the_create():
    res, job = training()
    report, doc, provider, store = run([change(job)], [res], [job])
    assert report.outcomes["Training/t"].outcome == O_SUCCEEDED
    st = doc.addresses["Training/t"]
    assert st.status == SUCCEEDED and st.remote_id == "job1" and st.intent is None
    assert st.outputs["version"].startswith("me/poems:")
    assert [a.remote_id for a in st.history] == ["job1"]
    # The first save carried the intent and no remote id: a crash right after it is recoverable.
    first = store.snapshots[0]["addresses"]["Training/t"]
    assert first["intent"] is not None and first["remote_id"] is None
    assert provider.creates == 1


def test_ambiguous_create_is_looked_up_and_adopted_not_resent():
    res, job = training()
    provider = FakeProvider()
    provider.drop_next_create_after_commit = 1
    report, doc, provider, _ = run([change(job)], [res], [job], provider=provider)
    assert provider.creates == 1, "the create must not be re-sent when the job exists"
    assert doc.addresses["Training/t"].remote_id == "job1"
    assert report.outcomes["Training/t"].outcome == O_SUCCEEDED


def test_pending_intent_from_a_crash_adopts_the_existing_job():
    res, job = training()
    provider = FakeProvider()
    asyncio.run(provider.create(CreateRequest(job_kind=JOB_TRAINING, body={"input": {"order": 3}},
                                              model="jobrunner/ngram", version=VERSION, destination="me/poems")))
    doc = StateDoc(lineage="L")
    doc.addresses["Training/t"] = AddressState(
        address="Training/t", kind="Training", job_kind=JOB_TRAINING, provider="local", file="t.yaml",
        intent=Intent(fingerprint=job.fingerprint, attempt=1,
                      created_at=to_rfc3339(datetime.now(UTC) - timedelta(seconds=5)), request_digest="x"))
    report, doc, provider, _ = run([change(job)], [res], [job], provider=provider, doc=doc)
    assert provider.creates == 1
    assert doc.addresses["Training/t"].remote_id == "job1"
    assert report.outcomes["Training/t"].outcome == O_SUCCEEDED


def test_failed_job_is_retried_up_to_max_attempts():
    res, job = training(input={"fail": True}, retry=3)
    report, doc, provider, _ = run([change(job)], [res], [job])
    assert provider.creates == 3
    st = doc.addresses["Training/t"]
    assert st.attempts == 3 and st.status == FAILED
    assert [a.attempt for a in st.history] == [1, 2, 3]
    assert report.outcomes["Training/t"].outcome == O_FAILED


def test_retry_action_continues_the_attempt_count():
    res, job = training(input={"fail": True}, retry=2)
    doc = StateDoc(lineage="L")
    prior = AddressState(address="Training/t", kind="Training", job_kind=JOB_TRAINING, provider="local",
                         file="t.yaml", fingerprint=job.fingerprint, remote_id="old", status=FAILED, attempts=1)
    doc.addresses["Training/t"] = prior
    report, doc, provider, _ = run([change(job, RETRY, prior)], [res], [job], doc=doc)
    assert provider.creates == 1, "attempt 2 of 2 only"
    assert doc.addresses["Training/t"].attempts == 2


def test_dependent_is_resolved_after_upstream_succeeds():
    tres, tjob = training()
    bres, bjob = batch_item("Training/t", "moon", None)
    resolved = DesiredJob(**{**bjob.__dict__, "fingerprint": "fp-item",
                             "request": {**bjob.request, "version": "b" * 64, "model": "me/poems"}})
    report, doc, provider, _ = run([change(tjob), change(bjob)], [tres, bres], [tjob, bjob],
                                   expand=lambda: [tjob, resolved])
    assert report.outcomes["PredictionBatch/b[moon]"].outcome == O_SUCCEEDED
    created = [j for j in provider.jobs.values() if j.job_kind == JOB_PREDICTION]
    assert len(created) == 1 and created[0].version == "b" * 64
    assert doc.addresses["PredictionBatch/b[moon]"].fingerprint == "fp-item"


def test_upstream_failure_skips_dependents_with_a_reason():
    tres, tjob = training(input={"fail": True})
    bres, bjob = batch_item("Training/t", "moon", None)
    report, doc, provider, _ = run([change(tjob), change(bjob)], [tres, bres], [tjob, bjob])
    out = report.outcomes["PredictionBatch/b[moon]"]
    assert out.outcome == O_SKIPPED and "Training/t" in out.detail
    assert not [j for j in provider.jobs.values() if j.job_kind == JOB_PREDICTION]


def test_wait_deadline_leaves_jobs_running():
    res, job = training()
    provider = FakeProvider(polls_to_finish=10_000)
    report, doc, provider, _ = run([change(job)], [res], [job], provider=provider,
                                   options=ApplyOptions(deadline=time.monotonic() + 0.3))
    assert report.outcomes["Training/t"].outcome == O_RUNNING
    assert report.timed_out
    assert doc.addresses["Training/t"].remote_id == "job1"
    assert not provider.cancels, "a wait timeout never cancels jobs"


def test_wait_action_waits_on_the_existing_job_without_creating():
    res, job = training()
    provider = FakeProvider()
    remote = asyncio.run(provider.create(CreateRequest(job_kind=JOB_TRAINING, body={"input": {"order": 3}})))
    provider.creates = 0
    doc = StateDoc(lineage="L")
    prior = AddressState(address="Training/t", kind="Training", job_kind=JOB_TRAINING, provider="local",
                         file="t.yaml", fingerprint=job.fingerprint, remote_id=remote.id, status=PENDING, attempts=1)
    doc.addresses["Training/t"] = prior
    report, doc, provider, _ = run([change(job, WAIT, prior)], [res], [job], provider=provider, doc=doc)
    assert provider.creates == 0
    assert doc.addresses["Training/t"].status == SUCCEEDED


def test_identical_batch_items_after_a_crash_adopt_distinct_jobs():
    bres, a = batch_item("Training/x", "a", "fp1", version="c" * 64)
    _, b = batch_item("Training/x", "b", "fp2", version="c" * 64)
    a = DesiredJob(**{**a.__dict__, "depends_on": (), "request": {**a.request, "input": {"prompt": "same"}}})
    b = DesiredJob(**{**b.__dict__, "depends_on": (), "request": {**b.request, "input": {"prompt": "same"}}})
    provider = FakeProvider()
    for _ in range(2):
        asyncio.run(provider.create(CreateRequest(job_kind=JOB_PREDICTION, body={"input": {"prompt": "same"}},
                                                  version="c" * 64)))
    doc = StateDoc(lineage="L")
    when = to_rfc3339(datetime.now(UTC) - timedelta(seconds=5))
    for j in (a, b):
        doc.addresses[j.address] = AddressState(address=j.address, kind="PredictionBatch", job_kind=JOB_PREDICTION,
                                                provider="local", file="b.yaml",
                                                intent=Intent(j.fingerprint, 1, when, "x"))
    report, doc, provider, _ = run([change(a), change(b)], [bres], [a, b], provider=provider, doc=doc)
    assert provider.creates == 2, "both were adopted, none re-created"
    assert {doc.addresses[a.address].remote_id, doc.addresses[b.address].remote_id} == {"job1", "job2"}


def test_no_wait_defers_dependents_instead_of_failing_them():
    from jobrunner.reconcile.report import O_DEFERRED

    tres, tjob = training()
    bres, bjob = batch_item("Training/t", "moon", None)
    report, doc, provider, _ = run([change(tjob), change(bjob)], [tres, bres], [tjob, bjob],
                                   options=ApplyOptions(wait=False))
    assert report.outcomes["Training/t"].outcome == O_RUNNING
    assert report.outcomes["PredictionBatch/b[moon]"].outcome == O_DEFERRED
    assert not report.failed


def test_wait_deadline_defers_dependents_and_reports_a_timeout():
    from jobrunner.reconcile.report import O_DEFERRED

    tres, tjob = training()
    bres, bjob = batch_item("Training/t", "moon", None)
    provider = FakeProvider(polls_to_finish=10_000)
    report, doc, provider, _ = run([change(tjob), change(bjob)], [tres, bres], [tjob, bjob], provider=provider,
                                   options=ApplyOptions(deadline=time.monotonic() + 0.3))
    assert report.timed_out and not report.failed
    assert report.outcomes["PredictionBatch/b[moon]"].outcome == O_DEFERRED


def test_a_rejected_create_clears_its_intent():
    from jobrunner.errors import InvalidRequestError
    from jobrunner.reconcile.report import O_ERROR

    class Rejecting(FakeProvider):
        async def create(self, req):
            raise InvalidRequestError("invalid input", provider="local", status=422, detail="order: too large")

    res, job = training()
    report, doc, provider, store = run([change(job)], [res], [job], provider=Rejecting())
    assert report.outcomes["Training/t"].outcome == O_ERROR
    assert "too large" in report.outcomes["Training/t"].detail
    assert doc.addresses["Training/t"].intent is None


def test_a_job_finished_within_the_create_call_has_its_outputs_recorded_even_without_waiting():
    class Instant(FakeProvider):
        async def create(self, req):
            job = await super().create(req)
            return self._advance(job.id)

    res, job = training()
    report, doc, provider, _ = run([change(job)], [res], [job], provider=Instant(),
                                   options=ApplyOptions(wait=False))
    st = doc.addresses["Training/t"]
    assert st.status == SUCCEEDED and st.outputs["version"].startswith("me/poems:")
    assert report.outcomes["Training/t"].outcome == O_SUCCEEDED


def test_parallelism_bounds_concurrent_creates():
    class Slow(FakeProvider):
        def __init__(self):
            super().__init__()
            self.inflight = 0
            self.peak = 0

        async def create(self, req):
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            await asyncio.sleep(0.05)  # long enough that three creates overlap even on a loaded machine
            try:
                return await super().create(req)
            finally:
                self.inflight -= 1

    bres, _ = batch_item("Training/x", "0", "f")
    jobs = []
    for i in range(12):
        _, j = batch_item("Training/x", str(i), f"fp{i}", version="c" * 64)
        jobs.append(DesiredJob(**{**j.__dict__, "depends_on": (), "request": {**j.request, "input": {"i": i}}}))
    provider = Slow()
    report, doc, provider, store = run([change(j) for j in jobs], [bres], jobs, provider=provider,
                                       options=ApplyOptions(parallelism=3))
    # Bounded by --parallelism and reaching it: a peak of 1 would mean creates ran one at a time.
    assert provider.creates == 12 and provider.peak == 3
    assert all(o.outcome == O_SUCCEEDED for o in report.outcomes.values())
    assert len(store.snapshots) < 2 * 12, "intent and record saves of concurrent creates are coalesced"
