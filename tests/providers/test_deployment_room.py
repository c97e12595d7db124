"""Apply's deployment room against the real wire clients (respx): exactly-once create with a lookup
after an ambiguous failure, update in place, delete, waiting until ready."""
from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import httpx
import pytest
import respx

from jobrunner.errors import TransportError
from jobrunner.providers.base import GONE, SUCCEEDED
from jobrunner.reconcile.deployments import DeploymentRoom
from jobrunner.spec import expand
from jobrunner.state.model import AddressState, StateDoc
from tests.core.plan_helpers import deployment, emissary_deployment

from .conftest import (
    EMISSARY,
    REPLICATE,
    emissary_provider,
    fixture,
    replicate_provider,
)

REP = fixture("replicate/deployments.json")
EM = fixture("emissary/deployment_and_inference.json")
V = REP["create_deployment"]["request"]["body"]["version"]
NAME = "my-app-image-generator"
DEP = f"/v1/deployments/acme/{NAME}"


def _json(status: int, body) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _job(tmp_path: Path, res):
    (job,) = expand([res], tmp_path, {})
    return job


def _room(doc: StateDoc, saved: list[dict]) -> DeploymentRoom:
    async def flush() -> None:
        saved.append(json.loads(json.dumps(doc.to_json())))

    async def sleep(_: float) -> None:
        return None

    return DeploymentRoom(doc=doc, flush=flush, sleep=sleep)


def _state(doc: StateDoc, job) -> AddressState:
    st = AddressState(address=job.address, kind="Deployment", job_kind=job.job_kind, provider=job.provider,
                      file=job.file)
    doc.addresses[job.address] = st
    return st


def _replicate_job(tmp_path: Path, **spec):
    return _job(tmp_path, deployment(name=NAME, model="stability-ai/sdxl", version=V, hardware="gpu-t4",
                                     min_instances=0, max_instances=3, **spec))


async def _with(provider, fn):
    try:
        return await fn(provider)
    finally:
        await provider.aclose()


def test_create_saves_the_intent_first_then_records_the_deployment(tmp_path, fake_time):
    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/deployments").mock(return_value=_json(200, REP["create_deployment"]["response"]["body"]))
        asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).create(p, job, st)))
    assert json.loads(route.calls.last.request.content) == REP["create_deployment"]["request"]["body"]
    assert saved[0]["addresses"][job.address]["intent"]["fingerprint"] == job.fingerprint  # before the POST
    assert saved[0]["addresses"][job.address]["remote_id"] is None
    assert st.remote_id == f"acme/{NAME}" and st.status == SUCCEEDED and st.intent is None
    assert st.outputs["name"] == f"acme/{NAME}" and st.outputs["version"] == V
    assert st.fingerprint == job.fingerprint and st.history[0].remote_id == st.remote_id


def test_an_ambiguous_create_is_looked_up_by_name_never_sent_twice(tmp_path, fake_time):
    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    other = copy.deepcopy(REP["get_deployment"]["response"]["body"])
    other["name"] = "someone-else"
    page = {"next": None, "previous": None, "results": [other, REP["get_deployment"]["response"]["body"]]}
    with respx.mock(base_url=REPLICATE) as mock:
        post = mock.post("/v1/deployments").mock(side_effect=httpx.ReadTimeout("lost"))
        mock.get("/v1/deployments").mock(return_value=_json(200, page))
        dep = asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).create(p, job, st)))
    assert post.call_count == 1 and dep.id == st.remote_id == f"acme/{NAME}"


def test_an_ambiguous_create_not_found_keeps_its_intent_and_fails(tmp_path, fake_time):
    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    with respx.mock(base_url=REPLICATE) as mock:
        mock.post("/v1/deployments").mock(side_effect=httpx.ReadTimeout("lost"))
        mock.get("/v1/deployments").mock(return_value=_json(200, {"next": None, "results": []}))
        with pytest.raises(TransportError):
            asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).create(p, job, st)))
    assert st.intent is not None and st.remote_id is None  # the next apply looks it up again


def test_a_pending_intent_from_a_killed_apply_is_adopted_without_a_create(tmp_path, fake_time):
    from jobrunner.state.model import Intent

    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    st.intent = Intent(fingerprint=job.fingerprint, attempt=1, created_at="2024-02-15T16:32:50Z", request_digest="d")
    page = {"next": None, "results": [REP["get_deployment"]["response"]["body"]]}
    with respx.mock(base_url=REPLICATE, assert_all_called=False) as mock:
        post = mock.post("/v1/deployments")
        mock.get("/v1/deployments").mock(return_value=_json(200, page))
        asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).create(p, job, st)))
    assert post.call_count == 0 and st.remote_id == f"acme/{NAME}" and st.intent is None


def test_update_sends_every_updatable_field_and_keeps_the_deployment(tmp_path, fake_time):
    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    st.remote_id, st.fingerprint, st.status = f"acme/{NAME}", "old", SUCCEEDED
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.patch(DEP).mock(return_value=_json(200, REP["update_deployment"]["response"]["body"]))
        asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).update(p, job, st)))
    assert json.loads(route.calls.last.request.content) == {"version": V, "hardware": "gpu-t4", "min_instances": 0,
                                                            "max_instances": 3}
    assert st.fingerprint == job.fingerprint and st.remote_id == f"acme/{NAME}" and st.status == SUCCEEDED


def test_delete_then_the_address_reads_gone(tmp_path, fake_time):
    job = _replicate_job(tmp_path)
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    st.remote_id, st.status, st.outputs = f"acme/{NAME}", SUCCEEDED, {"name": f"acme/{NAME}"}
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.delete(DEP).mock(return_value=httpx.Response(204))
        asyncio.run(_with(replicate_provider(fake_time), lambda p: _room(doc, saved).delete(p, st)))
    assert route.call_count == 1 and st.status == GONE and st.outputs == {}


def test_an_emissary_deployment_is_waited_on_until_deployed(tmp_path, fake_time):
    job = _job(tmp_path, emissary_deployment(name="deployment-1", training_job_id="tr-12345", checkpoint=4,
                                             description="Deployment for my training job"))
    doc = StateDoc(lineage="L")
    saved: list[dict] = []
    st = _state(doc, job)
    created = EM["create_deployment"]["response"]["body"]
    detail = EM["get_deployment"]["response"]["body"]
    path = "/v1/projects/ms-12345/deployments"
    with respx.mock(base_url=EMISSARY) as mock:
        post = mock.post(path).mock(return_value=_json(201, created))
        mock.get(f"{path}/dp-12345").mock(side_effect=[
            _json(200, {**detail, "status": "Pending"}), _json(200, {**detail, "status": "Deploying"}),
            _json(200, detail)])

        async def scenario(p):
            room = _room(doc, saved)
            await room.create(p, job, st)
            return await room.wait_ready(p, st, deadline=None)

        final = asyncio.run(_with(emissary_provider(fake_time), scenario))
    assert json.loads(post.calls.last.request.content) == EM["create_deployment"]["request"]["body"]
    assert final == SUCCEEDED and st.status == SUCCEEDED and st.project_id == "ms-12345"
    assert st.outputs == {"id": "dp-12345", "name": "deployment-1", "url": f"{EMISSARY}{path}/dp-12345",
                          "status": "Deployed"}
    assert [s["addresses"][job.address]["status"] for s in saved][-3:] == ["pending", "running", "succeeded"]
