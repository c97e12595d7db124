"""The executor's lookups under the hard cases, against the in-memory provider of
test_reconcile_executor: a sibling's create still in flight, a lagging list, a create answered
with an id state already records. Plus the create/lookup gate on its own."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from jobrunner.errors import ConfigError, TransportError
from jobrunner.providers.base import PENDING, SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.reconcile.context import ApplyOptions
from jobrunner.reconcile.creategate import CreateGate
from jobrunner.reconcile.matching import DEFAULT_LOOKUP_WINDOW, lookup_window, next_listing_delay
from jobrunner.reconcile.report import O_ERROR, O_SUCCEEDED
from jobrunner.resources import JOB_PREDICTION, DesiredJob, Resource
from jobrunner.state.model import AddressState, Attempt, StateDoc
from tests.reconcile.test_reconcile_executor import FakeProvider, batch_item, change, run

V = "c" * 64


def _identical(keys: list[str]) -> tuple[Resource, list[DesiredJob]]:
    res = None
    jobs = []
    for k in keys:
        res, j = batch_item("Training/x", k, "fp-same", version=V)
        jobs.append(
            DesiredJob(**{**j.__dict__, "depends_on": (), "request": {**j.request, "input": {"prompt": "same"}}})
        )
    return res, jobs


class SlowAnswers(FakeProvider):
    """Commits every create at once but answers after a delay; the create sent `drop_index`-th
    (0-based) answers first, with a dropped connection: the swap the gate prevents."""

    def __init__(self, drop_index: int) -> None:
        super().__init__()
        self.drop_index = drop_index
        self.sent = 0

    async def create(self, req: CreateRequest) -> RemoteJob:
        mine = self.sent
        self.sent += 1
        self.drop_next_create_after_commit = 0
        try:
            job = await super().create(req)
        except TransportError:  # pragma: no cover - not armed here
            raise
        if mine == self.drop_index:
            await asyncio.sleep(0.01)
            raise TransportError("connection dropped after commit", provider="local")
        await asyncio.sleep(0.2)  # the others' answers are still on their way during the lookup
        return job


def _run_proven(changes, resources, desired, provider):
    """`run`, with the provider's credential already proven, so creates go out concurrently."""
    from pathlib import Path

    from jobrunner.plan_types import Plan
    from jobrunner.reconcile.executor import Executor
    from jobrunner.reconcile.statewriter import StateWriter
    from jobrunner.reconcile.waiter import Waiter
    from tests.reconcile.test_reconcile_executor import Pool, RecordingStore

    doc = StateDoc(lineage="L")

    class Silent:
        def event(self, *a): ...
        def note(self, *a): ...

    async def go():
        pool = Pool(provider)
        ex = Executor(Plan(changes=changes), desired=desired, resources=resources,
                      writer=StateWriter(RecordingStore(), doc), pool=pool, root=Path("/nonexistent"),
                      expand=lambda: desired, progress=Silent(), options=ApplyOptions(lookup_window=0),
                      waiter=Waiter(pool, min_interval=0.01, max_interval=0.02))
        ex._proven.add("local")
        return await ex.run()

    return asyncio.run(go()), doc


def test_a_lookup_never_adopts_a_sibling_job_whose_create_answer_is_in_flight():
    res, jobs = _identical(["a", "b", "c", "d"])
    provider = SlowAnswers(drop_index=3)
    report, doc = _run_proven([change(j) for j in jobs], [res], jobs, provider)
    ids = [doc.addresses[j.address].remote_id for j in jobs]
    assert len(set(ids)) == 4 and set(ids) == set(provider.jobs), ids  # one job each, every job owned
    assert provider.creates == 4
    assert all(report.outcomes[j.address].outcome == O_SUCCEEDED for j in jobs)
    doc.check_remote_ids()


class LaggingList(FakeProvider):
    """Lists leave out jobs younger than `lag` seconds; GET finds them at once."""

    def __init__(self, lag: float) -> None:
        super().__init__()
        self.lag = lag
        self.listings = 0

    async def list(self, job_kind, *, since=None, project_id=None):
        self.listings += 1
        cutoff = datetime.now(UTC) - timedelta(seconds=self.lag)
        async for job in super().list(job_kind, since=since, project_id=project_id):
            if job.created_at <= cutoff:
                yield job


@pytest.mark.slow  # waits out a lookup window
def test_a_lagging_list_is_read_again_within_the_window_instead_of_creating_a_duplicate():
    res, jobs = _identical(["a"])
    provider = LaggingList(lag=1.0)
    provider.drop_next_create_after_commit = 1
    report, doc, provider, _ = run([change(jobs[0])], [res], jobs, provider=provider,
                                   options=ApplyOptions(lookup_window=3))
    assert provider.creates == 1, "the dropped create's job was found once the list caught up"
    assert provider.listings >= 2
    assert doc.addresses[jobs[0].address].remote_id == "job1"
    assert report.outcomes[jobs[0].address].adopted == 1


def test_without_a_window_the_lagging_list_is_trusted_at_once():
    """What happened before the window existed: one dropped create, a duplicate (the reason for it)."""
    res, jobs = _identical(["a"])
    provider = LaggingList(lag=1.0)
    provider.drop_next_create_after_commit = 1
    run([change(jobs[0])], [res], jobs, provider=provider, options=ApplyOptions(lookup_window=0))
    assert provider.creates == 2


class AnswersWith(FakeProvider):
    def __init__(self, rid: str) -> None:
        super().__init__()
        self.rid = rid

    async def create(self, req: CreateRequest) -> RemoteJob:
        self.creates += 1
        return RemoteJob(id=self.rid, job_kind=req.job_kind, status=PENDING, created_at=datetime.now(UTC),
                         input=dict(req.body.get("input") or {}), version=req.version)


def test_a_create_answered_with_an_id_state_already_records_is_a_protocol_error():
    res, jobs = _identical(["a", "b"])
    doc = StateDoc(lineage="L")
    doc.addresses[jobs[0].address] = AddressState(
        address=jobs[0].address, kind="PredictionBatch", job_kind=JOB_PREDICTION, provider="local", file="b.yaml",
        fingerprint="fp-same", remote_id="taken", status=SUCCEEDED, attempts=1,
        history=[Attempt("taken", "fp-same", 1, "2026-01-01T00:00:00Z", SUCCEEDED)])
    report, doc, provider, _ = run([change(jobs[1])], [res], jobs, provider=AnswersWith("taken"), doc=doc,
                                   options=ApplyOptions(lookup_window=0))
    outcome = report.outcomes[jobs[1].address]
    assert outcome.outcome == O_ERROR and "taken" in outcome.detail and jobs[0].address in outcome.detail
    st = doc.addresses[jobs[1].address]
    assert st.remote_id is None and st.intent is not None  # nothing recorded; the next apply looks it up
    assert doc.owner_of("taken") == jobs[0].address


def test_the_gate_lets_creates_overlap_and_a_lookup_run_alone():
    gate = CreateGate()
    log: list[str] = []

    async def create(name: str, hold: float) -> None:
        async with gate.creating("k"):
            log.append(f"+{name}")
            await asyncio.sleep(hold)
            log.append(f"-{name}")

    async def lookup() -> None:
        await asyncio.sleep(0.01)
        async with gate.looking("k"):
            log.append("+L")
            await asyncio.sleep(0.05)
            log.append("-L")

    async def late_create() -> None:
        await asyncio.sleep(0.02)  # arrives while the lookup waits: goes after it
        await create("c", 0.0)

    async def main() -> None:
        await asyncio.gather(create("a", 0.1), create("b", 0.1), lookup(), late_create())

    asyncio.run(main())
    assert log.index("+L") > max(log.index("-a"), log.index("-b"))
    assert log.index("+c") > log.index("-L")
    assert log.index("+b") < log.index("-a")  # creates overlap


def test_lookup_window_setting():
    assert lookup_window({}) == DEFAULT_LOOKUP_WINDOW
    assert lookup_window({"JOBRUNNER_LOOKUP_WINDOW": "2.5"}) == 2.5
    assert lookup_window({"JOBRUNNER_LOOKUP_WINDOW": "0"}) == 0
    for bad in ("-1", "soon", "1e9"):
        with pytest.raises(ConfigError) as err:
            lookup_window({"JOBRUNNER_LOOKUP_WINDOW": bad})
        assert "JOBRUNNER_LOOKUP_WINDOW" in str(err.value)
    assert [next_listing_delay(i, 8.0) for i in range(3)] == [2.0, 8.0, 8.0]
    assert next_listing_delay(0, 0.3) == 0.3 and next_listing_delay(1, -1) == 0


@pytest.mark.slow  # waits out a lookup window
def test_waiting_out_the_window_with_one_slot_and_an_unproven_provider_does_not_deadlock():
    """The first create of a provider goes alone; if it is dropped, its lookup waits out the window
    while holding that one-at-a-time gate, so it must keep its slot (the others would wait on the
    gate holding the only slot, and it on the slot)."""
    from pathlib import Path

    from jobrunner.plan_types import Plan
    from jobrunner.reconcile.executor import Executor
    from jobrunner.reconcile.statewriter import StateWriter
    from jobrunner.reconcile.waiter import Waiter
    from tests.reconcile.test_reconcile_executor import Pool, RecordingStore

    res, jobs = _identical(["a", "b", "c"])
    provider = LaggingList(lag=0.5)
    provider.drop_next_create_after_commit = 1
    doc = StateDoc(lineage="L")

    class Silent:
        def event(self, *a): ...
        def note(self, *a): ...

    async def go():
        pool = Pool(provider)
        ex = Executor(Plan(changes=[change(j) for j in jobs]), desired=jobs, resources=[res],
                      writer=StateWriter(RecordingStore(), doc), pool=pool, root=Path("/nonexistent"),
                      expand=lambda: jobs, progress=Silent(), options=ApplyOptions(lookup_window=1.5, parallelism=1),
                      waiter=Waiter(pool, min_interval=0.01, max_interval=0.02))
        return await asyncio.wait_for(ex.run(), timeout=30)

    report = asyncio.run(go())
    assert all(report.outcomes[j.address].outcome == O_SUCCEEDED for j in jobs)
    assert provider.creates == 3 and len({doc.addresses[j.address].remote_id for j in jobs}) == 3
