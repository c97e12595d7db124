"""The Emissary provider against respx, with bodies shaped like the SDK 0.4.4 fixtures."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
import respx

from jobrunner.errors import AuthError, InvalidRequestError, NotFoundError, ServerError, UsageError
from jobrunner.providers.base import CreateRequest

from .conftest import EMISSARY, EMISSARY_KEY, emissary_provider, fixture, run

JOBS = "/v1/projects/ms-12345/training-jobs"


def _json(status: int, body) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


async def _call(provider, fn):
    try:
        return await fn(provider)
    finally:
        await provider.aclose()


def test_create_sends_the_request_body_with_the_api_key(fake_time):
    fx = fixture("emissary/training_job_create.json")
    req = CreateRequest(
        job_kind="training", body={**fx["request"]["body"], "provider": "emissary"}, project_id="ms-12345"
    )
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(JOBS).mock(return_value=_json(201, fx["response"]["body"]))
        job = run(_call(emissary_provider(fake_time), lambda p: p.create(req)))
    sent = route.calls.last.request
    assert sent.headers["X-API-Key"] == EMISSARY_KEY and "Authorization" not in sent.headers
    assert json.loads(sent.content) == fx["request"]["body"]  # jobrunner's own keys are not sent
    assert job.id == "tr-12345" and job.status == "pending" and job.project_id == "ms-12345"
    assert job.created_at == datetime.fromtimestamp(1633036800, tz=UTC)
    assert job.model == "Llama-3.2-1B-Instruct"


def test_create_needs_a_project(fake_time):
    req = CreateRequest(job_kind="training", body={"base_model": "jobrunner-ngram", "train_dataset_id": "ds-1"})
    with pytest.raises(UsageError) as info:
        run(_call(emissary_provider(fake_time), lambda p: p.create(req)))
    assert "project_id" in str(info.value)


def test_create_400_keeps_the_error_text_and_is_not_retried(fake_time):
    fx = fixture("emissary/errors.json")["invalid_input_400"]["response"]
    req = CreateRequest(
        job_kind="training", body={"base_model": "x", "train_dataset_id": "ds-1"}, project_id="ms-12345"
    )
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post(JOBS).mock(return_value=_json(400, fx["body"]))
        with pytest.raises(InvalidRequestError) as info:
            run(_call(emissary_provider(fake_time), lambda p: p.create(req)))
    assert info.value.detail == "Bad request" and route.call_count == 1


def test_get_detail_maps_status_progress_and_loss(fake_time):
    fx = fixture("emissary/training_job_detail_and_list.json")["get"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(200, fx))
        job = run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-12345", project_id="ms-12345")))
    assert job.status == "running" and job.raw_status == "Running" and not job.terminal
    assert job.metrics == {"progress": 75, "loss": 0.1234}
    assert job.extra["parameters"] == {"epochs": 3, "learning_rate": 0.0002, "lora_r": 16}
    assert job.extra["description"] == "Fine-tuning the model on my dataset"


@pytest.mark.parametrize(
    "raw,normalized",
    [("Pending", "pending"), ("Running", "running"), ("Success", "succeeded"), ("Failed", "failed"),
     ("TimedOut", "failed"), ("Cancelled", "canceled"), ("Testing", "unknown"), ("running", "unknown")],
)
def test_status_enum(fake_time, raw, normalized):
    body = {**fixture("emissary/training_job_create.json")["response"]["body"], "status": raw, "updated_at": 1633040000}
    with respx.mock(base_url=EMISSARY, assert_all_called=False) as mock:
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(200, body))
        # A succeeded job's outputs come from its checkpoints; only a success asks for them.
        points = mock.get(f"{JOBS}/tr-12345/checkpoints").mock(return_value=_json(200, []))
        job = run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-12345", project_id="ms-12345")))
    assert points.called == (normalized == "succeeded")
    assert job.status == normalized and job.raw_status == raw
    if raw == "TimedOut":
        assert job.error == "training timed out"
    if normalized in ("succeeded", "failed", "canceled"):
        assert job.completed_at == datetime.fromtimestamp(1633040000, tz=UTC)


def test_a_succeeded_job_carries_its_latest_checkpoint_as_outputs(fake_time):
    from jobrunner.reconcile.outputs import outputs_of

    body = {**fixture("emissary/training_job_create.json")["response"]["body"], "status": "Success"}
    points = fixture("emissary/training_job_checkpoints_cancel_delete.json")["list_checkpoints"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(200, body))
        mock.get(f"{JOBS}/tr-12345/checkpoints").mock(return_value=_json(200, list(reversed(points))))
        job = run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-12345", project_id="ms-12345")))
    assert outputs_of("training", job) == {"id": "tr-12345", "checkpoint": 2,
                                           "model_download_url": "s3://my_model/checkpoint-2"}


def test_a_success_without_checkpoints_records_no_checkpoint_output(fake_time):
    from jobrunner.reconcile.outputs import outputs_of

    body = {**fixture("emissary/training_job_create.json")["response"]["body"], "status": "Success"}
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(200, body))
        mock.get(f"{JOBS}/tr-12345/checkpoints").mock(return_value=_json(200, []))
        job = run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-12345", project_id="ms-12345")))
    assert outputs_of("training", job) == {"id": "tr-12345"}


def test_list_is_a_bare_array_sorted_newest_first_and_cut_at_since(fake_time):
    fx = fixture("emissary/training_job_detail_and_list.json")["list"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(JOBS).mock(return_value=_json(200, list(reversed(fx))))

        async def collect(p):
            every = [j async for j in p.list("training", project_id="ms-12345")]
            recent = [
                j
                async for j in p.list(
                    "training", project_id="ms-12345", since=datetime.fromtimestamp(1633035000, tz=UTC)
                )
            ]
            return every, recent

        every, recent = run(_call(emissary_provider(fake_time), collect))
    assert [j.id for j in every] == ["tr-12345", "tr-67890"]
    assert [j.status for j in every] == ["running", "canceled"]
    assert [j.id for j in recent] == ["tr-12345"]


def test_list_with_an_envelope_is_a_protocol_error(fake_time):
    from jobrunner.errors import ProtocolError

    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(JOBS).mock(return_value=_json(200, {"data": []}))
        with pytest.raises(ProtocolError):
            run(_call(emissary_provider(fake_time), lambda p: p.list("training", project_id="ms-12345").__anext__()))


def test_cancel_and_delete_are_204(fake_time):
    with respx.mock(base_url=EMISSARY) as mock:
        cancel = mock.post(f"{JOBS}/tr-12345/cancel").mock(return_value=httpx.Response(204))
        delete = mock.delete(f"{JOBS}/tr-12345").mock(return_value=httpx.Response(204))
        gone = mock.delete(f"{JOBS}/tr-00000").mock(
            return_value=_json(404, {"status": 404, "error": "Not found", "code": "object_not_found"})
        )

        async def flow(p):
            await p.cancel("training", "tr-12345", project_id="ms-12345")
            await p.delete("training", "tr-12345", project_id="ms-12345")
            await p.delete("training", "tr-00000", project_id="ms-12345")  # already gone: done

        run(_call(emissary_provider(fake_time), flow))
    assert cancel.call_count == delete.call_count == gone.call_count == 1


def test_404_with_code(fake_time):
    fx = fixture("emissary/errors.json")["not_found_404"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-404").mock(return_value=_json(404, fx))
        with pytest.raises(NotFoundError) as info:
            run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-404", project_id="ms-12345")))
    assert info.value.detail == "Not found (object_not_found)"


def test_401_names_the_key_variable_not_the_key(fake_time):
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(JOBS).mock(return_value=_json(401, {"status": 401, "error": "Unauthorized"}))
        with pytest.raises(AuthError) as info:
            run(_call(emissary_provider(fake_time), lambda p: p.list("training", project_id="ms-12345").__anext__()))
    assert "EMISSARY_CLIENT_API_KEY" in info.value.hint
    assert EMISSARY_KEY not in str(info.value) + (info.value.hint or "") + (info.value.detail or "")


def test_5xx_on_a_read_is_retried(fake_time):
    fx = fixture("emissary/errors.json")["generic_5xx"]["response"]["body"]
    ok = fixture("emissary/training_job_detail_and_list.json")["get"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.get(f"{JOBS}/tr-12345").mock(side_effect=[_json(500, fx), _json(502, fx), _json(200, ok)])
        job = run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-12345", project_id="ms-12345")))
    assert route.call_count == 3 and job.id == "tr-12345"
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(500, fx))
        with pytest.raises(ServerError) as info:
            run(
                _call(
                    emissary_provider(fake_time, max_attempts=2),
                    lambda p: p.get("training", "tr-12345", project_id="ms-12345"),
                )
            )
    assert info.value.detail == "Internal server error"


def test_upload_creates_a_dataset_and_returns_its_id(fake_time, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hello"}\n')
    with respx.mock(base_url=EMISSARY) as mock:
        route = mock.post("/v1/projects/ms-12345/datasets").mock(
            return_value=_json(
                201, {"id": "ds-12345", "name": "train.jsonl", "created_at": 1633036800, "is_uploaded": True}
            )
        )
        dataset = run(_call(emissary_provider(fake_time), lambda p: p.upload(str(data), project_id="ms-12345")))
    assert dataset == "ds-12345"
    body = route.calls.last.request.content
    assert b'name="name"' in body and b"train.jsonl" in body
    assert b'name="file"; filename="train.jsonl"' in body and b'{"text": "hello"}' in body


def test_checkpoints_and_logs(fake_time):
    ckpts = fixture("emissary/training_job_checkpoints_cancel_delete.json")["list_checkpoints"]["response"]["body"]
    detail = fixture("emissary/training_job_detail_and_list.json")["get"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get(f"{JOBS}/tr-12345/checkpoints").mock(return_value=_json(200, ckpts))
        mock.get(f"{JOBS}/tr-12345").mock(return_value=_json(200, detail))

        async def flow(p):
            return await p.checkpoints("tr-12345", project_id="ms-12345"), await p.logs(
                "training", "tr-12345", project_id="ms-12345"
            )

        got, logs = run(_call(emissary_provider(fake_time), flow))
    assert [c["checkpoint"] for c in got] == [1, 2]
    assert logs.splitlines()[0] == "status: Running"
    assert "progress: 75%" in logs and "loss=0.1234" in logs


def test_refresh_many_lists_the_project_once(fake_time):
    fx = fixture("emissary/training_job_detail_and_list.json")["list"]["response"]["body"]
    with respx.mock(base_url=EMISSARY) as mock:
        listing = mock.get(JOBS).mock(return_value=_json(200, fx))
        gone = mock.get(f"{JOBS}/tr-00000").mock(
            return_value=_json(404, {"status": 404, "error": "Not found", "code": "object_not_found"})
        )
        got = run(
            _call(
                emissary_provider(fake_time),
                lambda p: p.refresh_many("training", ["tr-12345", "tr-67890", "tr-00000"], project_id="ms-12345"),
            )
        )
    assert (
        got["tr-12345"].status == "running"
        and got["tr-67890"].status == "canceled"
        and got["tr-00000"].status == "gone"
    )
    assert listing.call_count == 1 and gone.call_count == 1


def test_only_trainings(fake_time):
    with pytest.raises(UsageError):
        run(_call(emissary_provider(fake_time), lambda p: p.get("prediction", "x", project_id="ms-12345")))
