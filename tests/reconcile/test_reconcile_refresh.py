"""Refresh asks only about non-terminal tracked jobs, in bulk where the provider can, and absorbs
what it learns (status, outputs) into state."""
from __future__ import annotations

import asyncio
from datetime import datetime

from jobrunner.errors import NotFoundError
from jobrunner.providers.base import FAILED, GONE, RUNNING, SUCCEEDED, RemoteJob
from jobrunner.refresh import absorb, bulk_refresh, claimed_ids, refresh_tracked
from jobrunner.state.model import AddressState, Attempt, StateDoc


class Provider:
    def __init__(self, bulk: bool) -> None:
        self.gets: list[str] = []
        self.bulk_calls: list[set[str]] = []
        if bulk:
            self.refresh_many = self._refresh_many

    async def _refresh_many(self, job_kind: str, ids: set[str], oldest: datetime) -> dict[str, RemoteJob]:
        self.bulk_calls.append(set(ids))
        return {i: RemoteJob(id=i, job_kind=job_kind, status=SUCCEEDED, output=f"out-{i}") for i in ids if i != "gone"}

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        self.gets.append(remote_id)
        if remote_id == "gone":
            raise NotFoundError("404", provider="local", status=404)
        return RemoteJob(id=remote_id, job_kind=job_kind, status=RUNNING)


class Pool:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def get(self, name: str) -> Provider:
        return self.provider


def doc_with(statuses: dict[str, str], provider: str = "local") -> StateDoc:
    doc = StateDoc()
    for rid, status in statuses.items():
        addr = f"PredictionBatch/b[{rid}]"
        doc.addresses[addr] = AddressState(addr, "PredictionBatch", "prediction", provider, "b.yaml", remote_id=rid,
                                           status=status, fingerprint="f",
                                           history=[Attempt(rid, "f", 1, "2026-01-01T00:00:00Z", status)])
    return doc


def test_terminal_jobs_are_never_asked_about():
    doc = doc_with({"a": "succeeded", "b": "failed", "c": "canceled"})
    provider = Provider(bulk=True)
    assert asyncio.run(refresh_tracked(doc, Pool(provider))) == {}
    assert provider.gets == [] and provider.bulk_calls == []


def test_running_jobs_are_refreshed_in_bulk_and_missing_ones_are_gone():
    doc = doc_with({"a": "succeeded", "r1": "running", "r2": "pending", "gone": "running"})
    provider = Provider(bulk=True)
    seen = asyncio.run(refresh_tracked(doc, Pool(provider)))
    assert provider.bulk_calls == [{"r1", "r2", "gone"}]
    assert provider.gets == ["gone"]
    assert seen["PredictionBatch/b[gone]"].status == GONE
    assert seen["PredictionBatch/b[r1]"].status == SUCCEEDED


def test_without_bulk_each_job_is_fetched():
    # A provider whose adapter does not offer bulk refresh (no adapter at all, here) gets one `get`
    # per job, even if its client happens to have a `refresh_many`: the capability decides.
    for client_has_bulk in (False, True):
        doc = doc_with({"r1": "running", "r2": "running"}, provider="no-bulk")
        provider = Provider(bulk=client_has_bulk)
        asyncio.run(refresh_tracked(doc, Pool(provider)))
        assert sorted(provider.gets) == ["r1", "r2"] and provider.bulk_calls == []


def test_bulk_refresh_is_the_adapters_capability():
    assert bulk_refresh("local") and bulk_refresh("replicate") and bulk_refresh("emissary")
    assert not bulk_refresh("no-such-provider")


def test_absorb_records_outputs_of_jobs_that_finished_unattended():
    doc = doc_with({"r1": "running", "r2": "running"})
    seen = {"PredictionBatch/b[r1]": RemoteJob(id="r1", job_kind="prediction", status=SUCCEEDED, output="hi"),
            "PredictionBatch/b[r2]": RemoteJob(id="r2", job_kind="prediction", status=FAILED, error="boom")}
    assert absorb(doc, seen, only_succeeded=True) == ["PredictionBatch/b[r1]"]
    st = doc.addresses["PredictionBatch/b[r1]"]
    assert st.status == SUCCEEDED and st.outputs["output"] == "hi" and st.history[-1].status == SUCCEEDED
    assert doc.addresses["PredictionBatch/b[r2]"].status == "running"
    assert absorb(doc, seen) == ["PredictionBatch/b[r2]"]
    assert doc.addresses["PredictionBatch/b[r2]"].error == "boom"
    assert claimed_ids(doc) == {"r1", "r2"}
