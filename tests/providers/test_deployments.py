"""Deployment wire clients against respx: Replicate deployments and deployment predictions, Emissary
deployments and inference, with bodies shaped like the official examples and SDK fixtures."""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import httpx
import pytest
import respx

from jobrunner.errors import (
    InvalidRequestError,
    NotFoundError,
    ServerError,
    TransportError,
    UsageError,
)
from jobrunner.providers.base import (
    CANCELED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    CreateRequest,
)

from .conftest import (
    EMISSARY,
    EMISSARY_KEY,
    REPLICATE,
    TOKEN,
    emissary_provider,
    fixture,
    replicate_provider,
    run,
)

REP = fixture("replicate/deployments.json")
EM = fixture("emissary/deployment_and_inference.json")
DEP = "/v1/deployments/acme/my-app-image-generator"
EM_DEPS = "/v1/projects/ms-12345/deployments"


def _json(status: int, body) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


async def _call(provider, fn):
    try:
        return await fn(provider)
    finally:
        await provider.aclose()


# --- Replicate -------------------------------------------------------------------------------


def test_replicate_create_sends_the_documented_body_and_reads_the_release(fake_time):
    fx = REP["create_deployment"]
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/deployments").mock(return_value=_json(200, fx["response"]["body"]))
        dep = run(_call(replicate_provider(fake_time), lambda p: p.create_deployment(
            {**fx["request"]["body"], "provider": "replicate", "kind": "deployment"})))
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent.content) == fx["request"]["body"]  # jobrunner's own keys are not sent
    assert dep.id == dep.name == "acme/my-app-image-generator"
    assert dep.status == SUCCEEDED and dep.ready  # Replicate reports no status: an answered deployment serves
    assert dep.model == "stability-ai/sdxl" and dep.version == fx["request"]["body"]["version"]
    assert dep.settings == {"hardware": "gpu-t4", "min_instances": 1, "max_instances": 5,
                            "model": "stability-ai/sdxl", "version": dep.version}
    assert dep.url == f"{REPLICATE}{DEP}"
    assert dep.created_at == datetime(2024, 2, 15, 16, 32, 57, 18467, tzinfo=UTC)
    # Replicate reports no deployment status: there is no `status` output (jobrunner's "succeeded" is not one).
    assert dep.outputs() == {"id": dep.id, "name": "acme/my-app-image-generator", "url": dep.url,
                             "version": dep.version}


def test_replicate_create_is_never_retried_blindly(fake_time):
    body = REP["create_deployment"]["request"]["body"]
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/deployments").mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(TransportError):
            run(_call(replicate_provider(fake_time), lambda p: p.create_deployment(body)))
    assert route.call_count == 1


def test_replicate_create_needs_every_required_field(fake_time):
    with pytest.raises(UsageError) as info:
        run(_call(replicate_provider(fake_time), lambda p: p.create_deployment({"name": "x", "model": "a/b"})))
    assert "version, hardware, min_instances, max_instances" in str(info.value)


def test_replicate_get_and_a_deployment_deleted_outside(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(DEP).mock(return_value=_json(200, REP["get_deployment"]["response"]["body"]))
        mock.get("/v1/deployments/acme/gone").mock(
            return_value=_json(404, {"detail": "Not found.", "status": 404}))
        dep = run(_call(replicate_provider(fake_time), lambda p: p.get_deployment("acme/my-app-image-generator")))
        with pytest.raises(NotFoundError) as info:
            run(_call(replicate_provider(fake_time), lambda p: p.get_deployment("acme/gone")))
    assert dep.settings["max_instances"] == 5
    assert info.value.detail == "Not found." and "get deployment acme/gone" in str(info.value)


def test_replicate_update_patches_only_what_changed_and_may_be_retried(fake_time):
    fx = REP["update_deployment"]
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.patch(DEP).mock(side_effect=[_json(503, {"detail": "busy"}), _json(200, fx["response"]["body"])])
        dep = run(_call(replicate_provider(fake_time), lambda p: p.update_deployment(
            "acme/my-app-image-generator", fx["request"]["body"])))
    assert route.call_count == 2  # absolute values: a repeated PATCH gives the same deployment
    assert json.loads(route.calls.last.request.content) == {"min_instances": 3, "max_instances": 10}
    assert dep.settings["min_instances"] == 3 and dep.settings["max_instances"] == 10


def test_replicate_update_refuses_a_field_that_cannot_change_in_place(fake_time):
    with pytest.raises(UsageError) as info:
        run(_call(replicate_provider(fake_time), lambda p: p.update_deployment(
            "acme/my-app-image-generator", {"model": "acme/other", "max_instances": 2})))
    assert "cannot change model" in str(info.value)


def test_replicate_delete_is_204_and_already_gone_counts_as_deleted(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.delete(DEP).mock(return_value=httpx.Response(204))
        gone = mock.delete("/v1/deployments/acme/gone").mock(return_value=_json(404, {"detail": "Not found."}))
        run(_call(replicate_provider(fake_time), lambda p: p.delete_deployment("acme/my-app-image-generator")))
        run(_call(replicate_provider(fake_time), lambda p: p.delete_deployment("acme/gone")))
    assert route.call_count == 1 and gone.call_count == 1


def test_replicate_delete_refused_keeps_the_provider_detail(fake_time):
    detail = "Deployments can only be deleted after they have been offline for 15 minutes"
    with respx.mock(base_url=REPLICATE) as mock:
        mock.delete(DEP).mock(return_value=_json(409, {"title": "Conflict", "detail": detail, "status": 409}))
        with pytest.raises(InvalidRequestError) as info:
            run(_call(replicate_provider(fake_time), lambda p: p.delete_deployment("acme/my-app-image-generator")))
    assert info.value.detail == f"Conflict: {detail}" and info.value.status == 409


def test_replicate_deployment_prediction_goes_to_the_deployment_without_a_version(fake_time):
    body = copy.deepcopy(fixture("replicate/prediction_get_succeeded.json"))
    body["deployment"] = "acme/my-app-image-generator"
    req = CreateRequest(job_kind="prediction", body={"input": {"prompt": "a bear"}, "webhook": "https://h.example/x"},
                        version="f" * 64, deployment="acme/my-app-image-generator")
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post(f"{DEP}/predictions").mock(return_value=_json(201, body))
        job = run(_call(replicate_provider(fake_time), lambda p: p.create(req)))
    assert json.loads(route.calls.last.request.content) == {"input": {"prompt": "a bear"}, "webhook": "https://h.example/x"}
    assert job.id == body["id"] and job.status == SUCCEEDED


def test_replicate_deployment_ids_are_owner_slash_name(fake_time):
    with pytest.raises(UsageError):
        run(_call(replicate_provider(fake_time), lambda p: p.get_deployment("no-owner")))


# --- Emissary --------------------------------------------------------------------------------


def test_emissary_create_sends_the_sdk_body_with_the_api_key(fake_time):
    fx = EM["create_deployment"]
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(EM_DEPS).mock(return_value=_json(201, fx["response"]["body"]))
        dep = run(_call(emissary_provider(fake_time), lambda p: p.create_deployment(
            {**fx["request"]["body"], "project_id": "ms-12345", "provider": "emissary"}, project_id="ms-12345")))
    sent = route.calls.last.request
    assert sent.headers["X-API-Key"] == EMISSARY_KEY and "Authorization" not in sent.headers
    assert json.loads(sent.content) == fx["request"]["body"]
    assert dep.id == "dp-12345" and dep.name == "deployment-1" and dep.status == PENDING and not dep.ready
    assert dep.raw_status == "Pending" and dep.url == f"{EMISSARY}{EM_DEPS}/dp-12345"
    assert dep.created_at == datetime.fromtimestamp(1633036800, tz=UTC)


def test_emissary_get_reads_the_detail_training_id(fake_time):
    fx = EM["get_deployment"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{EM_DEPS}/dp-12345").mock(return_value=_json(200, fx["response"]["body"]))
        dep = run(_call(emissary_provider(fake_time), lambda p: p.get_deployment("dp-12345", project_id="ms-12345")))
    assert dep.status == SUCCEEDED and dep.raw_status == "Deployed" and dep.model == "Llama-3.2-1B-Instruct"
    assert dep.settings == {"project_id": "ms-12345", "training_job_id": "tr-12345", "checkpoint": 4}
    assert dep.outputs() == {"id": "dp-12345", "name": "deployment-1", "url": dep.url, "status": "Deployed"}


@pytest.mark.parametrize(("raw", "status"), [("Deploying", RUNNING), ("Failed", FAILED), ("TimedOut", FAILED),
                                             ("Cancelled", CANCELED), ("Hibernating", "unknown")])
def test_emissary_statuses(fake_time, raw, status):
    body = {**EM["get_deployment"]["response"]["body"], "status": raw}
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{EM_DEPS}/dp-12345").mock(return_value=_json(200, body))
        dep = run(_call(emissary_provider(fake_time), lambda p: p.get_deployment("dp-12345", project_id="ms-12345")))
    assert dep.status == status and dep.raw_status == raw


def test_emissary_list_and_delete(fake_time):
    summary = EM["create_deployment"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(EM_DEPS).mock(return_value=_json(200, [summary, {**summary, "id": "dp-2", "status": "Deployed"}]))
        route = mock.delete(f"{EM_DEPS}/dp-12345").mock(return_value=httpx.Response(204))
        found = run(_call(emissary_provider(fake_time), lambda p: p.list_deployments(project_id="ms-12345")))
        run(_call(emissary_provider(fake_time), lambda p: p.delete_deployment("dp-12345", project_id="ms-12345")))
    assert [(d.id, d.status) for d in found] == [("dp-12345", PENDING), ("dp-2", SUCCEEDED)]
    assert route.call_count == 1


def test_emissary_errors_keep_the_sdk_error_text(fake_time):
    errors = fixture("emissary/errors.json")
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{EM_DEPS}/dp-404").mock(return_value=_json(404, errors["not_found_404"]["response"]["body"]))
        mock.post(EM_DEPS).mock(return_value=_json(400, errors["invalid_input_400"]["response"]["body"]))
        with pytest.raises(NotFoundError):
            run(_call(emissary_provider(fake_time), lambda p: p.get_deployment("dp-404", project_id="ms-12345")))
        with pytest.raises(InvalidRequestError) as info:
            run(_call(emissary_provider(fake_time), lambda p: p.create_deployment(
                {"training_job_id": "tr-1", "checkpoint": 99}, project_id="ms-12345")))
    assert info.value.detail == "Bad request"


@pytest.mark.parametrize(("endpoint", "key"), [("chat.completions", "chat_completions"),
                                               ("completions", "completions"), ("embeddings", "embeddings")])
def test_emissary_inference_endpoints(fake_time, endpoint, key):
    fx = EM[key]
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(fx["request"]["path"]).mock(return_value=_json(200, fx["response"]["body"]))
        answer = run(_call(emissary_provider(fake_time), lambda p: p.infer(
            "dp-12345", endpoint, fx["request"]["body"], project_id="ms-12345")))
    assert json.loads(route.calls.last.request.content) == fx["request"]["body"]
    assert answer == fx["response"]["body"]


def test_emissary_inference_is_not_retried_and_checks_its_answer(fake_time):
    fx = EM["completions"]
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(fx["request"]["path"]).mock(return_value=_json(502, {"error": "bad gateway"}))
        with pytest.raises(ServerError):
            run(_call(emissary_provider(fake_time), lambda p: p.infer(
                "dp-12345", "completions", fx["request"]["body"], project_id="ms-12345")))
    assert route.call_count == 1
    with pytest.raises(UsageError) as info:
        run(_call(emissary_provider(fake_time), lambda p: p.infer("dp-12345", "classify", {}, project_id="ms-12345")))
    assert "chat.completions, completions, embeddings" in str(info.value.hint)


def test_emissary_batch_row_is_one_inference_request_finished_when_it_answers(fake_time):
    fx = EM["chat_completions"]
    req = CreateRequest(job_kind="prediction", body=fx["request"]["body"], project_id="ms-12345",
                        deployment="dp-12345", endpoint="chat.completions")
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(fx["request"]["path"]).mock(return_value=_json(200, fx["response"]["body"]))
        job = run(_call(emissary_provider(fake_time), lambda p: p.create(req)))
    assert json.loads(route.calls.last.request.content) == fx["request"]["body"]
    assert job.id == "chat-completion-12345" and job.status == SUCCEEDED and job.terminal
    assert job.output == "I'm doing well, thank you!" and job.input == fx["request"]["body"]


def test_emissary_endpoints_match_the_manifest_schema():
    from jobrunner.providers.adapters.emissary import INFERENCE_BODIES
    from jobrunner.providers.emissary_deployments import ENDPOINTS

    assert set(ENDPOINTS) == set(INFERENCE_BODIES)
