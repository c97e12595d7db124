"""The Replicate provider against respx: request shapes, status mapping, pagination, bulk refresh."""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from jobrunner.errors import InvalidRequestError, NotFoundError, UsageError
from jobrunner.providers.base import CreateRequest
from jobrunner.providers.replicate import parse_time

from .conftest import REPLICATE, fixture, problem, replicate_provider, run

V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
CREATED = {  # verbatim create answer (api.md section 3.1)
    "id": "vgcm4plb7tgzlyznry5d5jkgvu",
    "model": "stability-ai/sdxl",
    "version": V1,
    "input": {"height": 512, "prompt": "a studio photo of a rainbow colored corgi", "seed": 42069, "width": 512},
    "logs": "",
    "error": None,
    "status": "starting",
    "created_at": "2023-08-16T18:57:08.36078514Z",
    "urls": {
        "cancel": "https://api.replicate.com/v1/predictions/vgcm4plb7tgzlyznry5d5jkgvu/cancel",
        "get": "https://api.replicate.com/v1/predictions/vgcm4plb7tgzlyznry5d5jkgvu",
    },
}
TRAINING_CREATED = {
    "id": "wj4is6lbdqqkdepnwpr6v2kuva",
    "model": "stability-ai/sdxl",
    "version": V1,
    "input": {"input_images": "https://replicate.delivery/pbxt/data.zip"},
    "logs": "",
    "error": None,
    "status": "starting",
    "created_at": "2023-08-16T19:33:26.678378653Z",
    "urls": {"cancel": "https://api.replicate.com/v1/predictions/wj4is6lbdqqkdepnwpr6v2kuva/cancel", "get": "https://api.replicate.com/v1/predictions/wj4is6lbdqqkdepnwpr6v2kuva"},
}


async def _call(provider, fn):
    try:
        return await fn(provider)
    finally:
        await provider.aclose()


def test_create_prediction_sends_only_api_fields_and_cancel_after(fake_time):
    req = CreateRequest(
        job_kind="prediction",
        body={
            "input": {"prompt": "a corgi"},
            "webhook": "https://example.com/hook",
            "webhook_events_filter": ["completed"],
            "address": "PredictionBatch/x[a]",
        },
        model="stability-ai/sdxl",
        version=V1,
        cancel_after="2h",
    )
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(return_value=httpx.Response(201, json=CREATED))
        job = run(_call(replicate_provider(fake_time), lambda p: p.create(req)))
    sent = route.calls.last.request
    assert json.loads(sent.content) == {
        "version": V1,
        "input": {"prompt": "a corgi"},
        "webhook": "https://example.com/hook",
        "webhook_events_filter": ["completed"],
    }
    assert sent.headers["Cancel-After"] == "2h"
    assert job.id == "vgcm4plb7tgzlyznry5d5jkgvu" and job.status == "pending" and job.raw_status == "starting"
    assert job.created_at == datetime(2023, 8, 16, 18, 57, 8, 360785, tzinfo=UTC)


def test_create_prediction_with_owner_name_colon_version(fake_time):
    req = CreateRequest(job_kind="prediction", body={"input": {}}, version=f"stability-ai/sdxl:{V1}")
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(return_value=httpx.Response(201, json=CREATED))
        run(_call(replicate_provider(fake_time), lambda p: p.create(req)))
    assert json.loads(route.calls.last.request.content)["version"] == V1


def test_create_prediction_of_an_official_model_by_name(fake_time):
    req = CreateRequest(
        job_kind="prediction", body={"input": {"prompt": "haiku"}}, model="meta/meta-llama-3-8b-instruct"
    )
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/models/meta/meta-llama-3-8b-instruct/predictions").mock(
            return_value=httpx.Response(201, json=CREATED)
        )
        run(_call(replicate_provider(fake_time), lambda p: p.create(req)))
    assert json.loads(route.calls.last.request.content) == {"input": {"prompt": "haiku"}}
    assert "Cancel-After" not in route.calls.last.request.headers


def test_create_training_posts_destination_to_the_version_path(fake_time):
    req = CreateRequest(
        job_kind="training",
        body={"input": {"input_images": "https://replicate.delivery/pbxt/data.zip"}},
        model="stability-ai/sdxl",
        version=V1,
        destination="me/corgi-sdxl",
    )
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post(f"/v1/models/stability-ai/sdxl/versions/{V1}/trainings").mock(
            return_value=httpx.Response(201, json=TRAINING_CREATED)
        )
        provider = replicate_provider(fake_time)
        job = run(_call(provider, lambda p: p.create(req)))
    assert json.loads(route.calls.last.request.content) == {"destination": "me/corgi-sdxl", "input": {"input_images": "https://replicate.delivery/pbxt/data.zip"}}
    assert job.job_kind == "training" and job.extra["destination"] == "me/corgi-sdxl"
    # training creates count against Replicate's general bucket, not the 600/min prediction one
    assert provider.http.stats["requests.other"] == 1 and provider.http.stats["requests.create"] == 0


def test_create_training_without_destination_is_refused_before_sending(fake_time):
    req = CreateRequest(job_kind="training", body={"input": {}}, model="a/b", version=V1)
    with respx.mock(base_url=REPLICATE, assert_all_called=False) as mock:
        with pytest.raises(UsageError):
            run(_call(replicate_provider(fake_time), lambda p: p.create(req)))
        assert not mock.calls


def test_get_succeeded_prediction_fixture(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get("/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu").mock(
            return_value=httpx.Response(200, json=fixture("replicate/prediction_get_succeeded.json"))
        )
        job = run(_call(replicate_provider(fake_time), lambda p: p.get("prediction", "gm3qorzdhgbfurvjtvhg6dckhu")))
    assert job.status == "succeeded" and job.terminal
    assert job.output == "hello Alice" and job.input == {"text": "Alice"}
    assert job.metrics == {"predict_time": 0.012683}
    assert job.model == "replicate/hello-world"
    assert job.completed_at - job.started_at == timedelta(microseconds=12683)


def test_get_succeeded_training_names_destination_and_new_version(fake_time):
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get("/v1/trainings/zz4ibbonubfz7carwiefibzgga").mock(
            return_value=httpx.Response(200, json=fixture("replicate/training_get_succeeded.json"))
        )
        job = run(_call(replicate_provider(fake_time), lambda p: p.get("training", "zz4ibbonubfz7carwiefibzgga")))
    assert job.status == "succeeded"
    assert job.extra["destination"] == "replicate/my-app-image-generator"
    assert job.extra["trained_version"] == "8a43525956ef4039702e509c789964a7ea873697be9033abf9fd2badfe68c9e3"
    assert job.output["weights"] == "https://weights.replicate.com/example.tar"


@pytest.mark.parametrize(
    "raw,normalized",
    [("starting", "pending"), ("processing", "running"), ("succeeded", "succeeded"), ("failed", "failed"),
     ("canceled", "canceled"), ("aborted", "aborted"), ("queued_for_gpu", "unknown"), (None, "unknown")],
)
def test_status_mapping_keeps_unknown_values(fake_time, raw, normalized):
    body = copy.deepcopy(fixture("replicate/prediction_get_succeeded.json"))
    body["status"] = raw
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get("/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu").mock(return_value=httpx.Response(200, json=body))
        job = run(_call(replicate_provider(fake_time), lambda p: p.get("prediction", "gm3qorzdhgbfurvjtvhg6dckhu")))
    assert job.status == normalized
    assert job.raw_status == raw
    if normalized == "unknown":
        assert not job.terminal  # an unknown status is waited on, never taken as final


def test_invalid_timestamps_do_not_crash():
    # the reference list fixture carries "20:00:84.583803Z", kept verbatim
    assert parse_time("2022-04-26T20:00:84.583803Z") is None
    assert parse_time("2024-10-04T18:07:40.328Z") == datetime(2024, 10, 4, 18, 7, 40, 328000, tzinfo=UTC)
    assert parse_time("2023-08-16T19:33:26.678378653Z").microsecond == 678378
    assert parse_time(None) is None


def test_cancel_is_retried_like_a_read(fake_time):
    canceled = {**CREATED, "status": "canceled"}
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions/vgcm4plb7tgzlyznry5d5jkgvu/cancel").mock(
            side_effect=[problem(503, {"detail": "unavailable"}), httpx.Response(200, json=canceled)]
        )
        run(_call(replicate_provider(fake_time), lambda p: p.cancel("prediction", "vgcm4plb7tgzlyznry5d5jkgvu")))
    assert route.call_count == 2


def test_logs_come_from_the_job(fake_time):
    body = {**CREATED, "status": "processing", "logs": "step 1\nstep 2\n"}
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get("/v1/trainings/t1").mock(return_value=httpx.Response(200, json={**body, "id": "t1"}))
        mock.get("/v1/trainings/t2").mock(return_value=httpx.Response(200, json={**body, "id": "t2", "logs": None}))
        logs = run(_call(replicate_provider(fake_time), lambda p: p.logs("training", "t1")))
        empty = run(_call(replicate_provider(fake_time), lambda p: p.logs("training", "t2")))
    assert logs == "step 1\nstep 2\n" and empty == ""


# --- lists and bulk refresh -----------------------------------------------------------------

BASE_TIME = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _pred(i: int, status: str = "succeeded", *, with_output: bool = True) -> dict:
    item = {
        "id": f"p{i:05d}",
        "model": "jobrunner/echo",
        "version": V1,
        "input": {"i": i},
        "status": status,
        "created_at": (BASE_TIME + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "urls": {"get": f"https://api.replicate.com/v1/predictions/p{i:05d}"},
    }
    if with_output:
        item["output"] = {"i": i} if status == "succeeded" else None
    return item


def _serve_pages(mock, items: list[dict], *, origin: str = REPLICATE):
    """Serve `items` (given oldest first) as Replicate does: newest first, 100 a page, cursor URLs."""
    newest_first = sorted(items, key=lambda x: x["created_at"], reverse=True)

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = int(request.url.params.get("cursor", "0"))
        after = request.url.params.get("created_after")
        rows = [x for x in newest_first if after is None or x["created_at"] >= after]
        page = rows[cursor : cursor + 100]
        nxt = f"{origin}/v1/predictions?cursor={cursor + 100}" if cursor + 100 < len(rows) else None
        return httpx.Response(200, json={"next": nxt, "previous": None, "results": page})

    return mock.get("/v1/predictions").mock(side_effect=handler)


def test_list_follows_cursor_pages_newest_first(fake_time):
    items = [_pred(i) for i in range(250)]
    with respx.mock(base_url=REPLICATE) as mock:
        route = _serve_pages(mock, items)

        async def collect(p):
            return [j async for j in p.list("prediction")]

        jobs = run(_call(replicate_provider(fake_time), collect))
    assert route.call_count == 3
    assert [j.id for j in jobs] == [f"p{i:05d}" for i in reversed(range(250))]


def test_list_since_uses_created_after_and_stops(fake_time):
    items = [_pred(i) for i in range(250)]
    since = BASE_TIME + timedelta(seconds=180)
    with respx.mock(base_url=REPLICATE) as mock:
        route = _serve_pages(mock, items)

        async def collect(p):
            return [j async for j in p.list("prediction", since=since)]

        jobs = run(_call(replicate_provider(fake_time), collect))
    assert route.calls[0].request.url.params["created_after"] == "2026-03-01T12:03:00.000000Z"
    assert len(jobs) == 70 and all(j.created_at >= since for j in jobs)
    assert route.call_count == 1


def test_list_stops_past_since_even_if_the_server_ignores_created_after(fake_time):
    items = [_pred(i) for i in range(500)]
    newest_first = sorted(items, key=lambda x: x["created_at"], reverse=True)

    def handler(request: httpx.Request) -> httpx.Response:  # a server without created_after support
        cursor = int(request.url.params.get("cursor", "0"))
        nxt = f"{REPLICATE}/v1/predictions?cursor={cursor + 100}" if cursor + 100 < 500 else None
        return httpx.Response(200, json={"next": nxt, "previous": None, "results": newest_first[cursor : cursor + 100]})

    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get("/v1/predictions").mock(side_effect=handler)

        async def collect(p):
            return [j async for j in p.list("prediction", since=BASE_TIME + timedelta(seconds=350))]

        jobs = run(_call(replicate_provider(fake_time), collect))
    assert route.call_count == 2 and len(jobs) == 150


def test_list_page_fixture_and_foreign_next_is_rerooted(fake_time):
    """A `next` naming another host is followed on our base URL: the token goes nowhere else."""
    page1 = fixture("replicate/predictions_list_page.json")
    page1["next"] = "https://evil.example.net/v1/predictions?cursor=cD0yMDIy"
    page2 = {"next": None, "previous": None, "results": [_pred(1)]}
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get("/v1/predictions").mock(
            side_effect=[httpx.Response(200, json=page1), httpx.Response(200, json=page2)]
        )

        async def collect(p):
            return [j async for j in p.list("prediction")]

        jobs = run(_call(replicate_provider(fake_time), collect))
    assert [j.id for j in jobs] == ["jpzd7hm5gfcapbfyt4mqytarku", "p00001"]
    assert str(route.calls[1].request.url) == "https://api.replicate.com/v1/predictions?cursor=cD0yMDIy"
    assert jobs[0].started_at is None  # the fixture's invalid timestamp is tolerated


def test_refresh_many_costs_pages_not_requests_per_job(fake_time):
    items = [_pred(i, "processing" if i % 3 else "succeeded") for i in range(1000)]
    tracked = {f"p{i:05d}" for i in range(500, 1000)}  # the 500 newest jobs
    with respx.mock(base_url=REPLICATE) as mock:
        route = _serve_pages(mock, items)
        provider = replicate_provider(fake_time)
        got = run(_call(provider, lambda p: p.refresh_many("prediction", tracked, BASE_TIME + timedelta(seconds=500))))
    assert set(got) == tracked
    assert got["p00999"].status == "succeeded" and got["p00998"].status == "running"
    # 500 jobs on 5 pages (plus the skew margin reaching one page further at most)
    assert route.call_count <= 6 and provider.http.stats["requests"] == route.call_count


def test_refresh_many_gets_what_the_list_did_not_show_and_marks_404_gone(fake_time):
    items = [_pred(i, "processing") for i in range(50)]
    with respx.mock(base_url=REPLICATE) as mock:
        _serve_pages(mock, items)
        old = mock.get("/v1/predictions/old01").mock(
            return_value=httpx.Response(200, json={**_pred(0), "id": "old01", "status": "failed", "error": "boom"})
        )
        gone = mock.get("/v1/predictions/gone1").mock(
            return_value=problem(404, {"detail": "The requested resource could not be found.", "status": 404})
        )
        got = run(
            _call(
                replicate_provider(fake_time),
                lambda p: p.refresh_many("prediction", {"p00010", "p00020", "old01", "gone1"}, BASE_TIME),
            )
        )
    assert got["p00010"].status == "running" and got["old01"].status == "failed" and got["old01"].error == "boom"
    assert got["gone1"].status == "gone"
    assert old.call_count == 1 and gone.call_count == 1


def test_refresh_many_fetches_abridged_terminal_jobs_in_full(fake_time):
    items = [_pred(i, "succeeded", with_output=False) for i in range(3)] + [_pred(3, "processing", with_output=False)]
    with respx.mock(base_url=REPLICATE) as mock:
        _serve_pages(mock, items)
        full = mock.get("/v1/predictions/p00001").mock(return_value=httpx.Response(200, json=_pred(1)))
        full2 = mock.get("/v1/predictions/p00002").mock(return_value=httpx.Response(200, json=_pred(2)))
        got = run(
            _call(
                replicate_provider(fake_time),
                lambda p: p.refresh_many("prediction", ["p00001", "p00002", "p00003"], BASE_TIME),
            )
        )
    assert got["p00001"].output == {"i": 1} and got["p00002"].output == {"i": 2}
    assert got["p00003"].status == "running"  # non-terminal: the list's view is enough
    assert full.call_count == full2.call_count == 1


def test_refresh_many_stops_listing_when_gets_get_cheaper(fake_time):
    """Two tracked jobs in a busy account: at most two pages are read before falling back to GETs."""
    items = [_pred(i, "succeeded") for i in range(2000)]
    with respx.mock(base_url=REPLICATE) as mock:
        pages = _serve_pages(mock, items)
        a = mock.get("/v1/predictions/p00005").mock(return_value=httpx.Response(200, json=_pred(5)))
        b = mock.get("/v1/predictions/p00007").mock(return_value=httpx.Response(200, json=_pred(7)))
        got = run(_call(replicate_provider(fake_time), lambda p: p.refresh_many("prediction", {"p00005", "p00007"})))
    assert set(got) == {"p00005", "p00007"}
    assert pages.call_count == 2 and a.call_count == b.call_count == 1


# --- files, models, schemas -----------------------------------------------------------------

def test_upload_sends_multipart_content_and_returns_the_file_url(fake_time, tmp_path):
    data = tmp_path / "poems.txt"
    data.write_text("The moon\nAt dawn\n")
    answer = {
        "id": "cneqzikepnug6xezperrr4z55o",
        "name": "poems.txt",
        "content_type": "text/plain",
        "size": 16,
        "etag": "x",
        "checksums": {"sha256": "0" * 64},
        "metadata": {},
        "created_at": "2024-02-21T12:54:18.578761Z",
        "expires_at": "2024-02-21T13:54:18.578761Z",
        "urls": {"get": "https://api.replicate.com/v1/files/cneqzikepnug6xezperrr4z55o"},
    }
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/files").mock(return_value=httpx.Response(201, json=answer))
        url = run(_call(replicate_provider(fake_time), lambda p: p.upload(str(data))))
    assert url == "https://api.replicate.com/v1/files/cneqzikepnug6xezperrr4z55o"
    request = route.calls.last.request
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="content"; filename="poems.txt"' in request.content and b"The moon\nAt dawn\n" in request.content


def test_upload_of_a_missing_file_is_a_clear_error(fake_time, tmp_path):
    with pytest.raises(UsageError) as info:
        run(_call(replicate_provider(fake_time), lambda p: p.upload(str(tmp_path / "nope.txt"))))
    assert "nope.txt" in str(info.value)


def test_models_get_missing_and_create(fake_time):
    model = {
        "url": "https://replicate.com/me/poems",
        "owner": "me",
        "name": "poems",
        "visibility": "private",
        "run_count": 0,
        "latest_version": None,
    }
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get("/v1/models/me/poems").mock(
            return_value=problem(404, {"detail": "The requested resource could not be found.", "status": 404})
        )
        create = mock.post("/v1/models").mock(return_value=httpx.Response(201, json=model))

        async def flow(p):
            with pytest.raises(NotFoundError):
                await p.get_model("me", "poems")
            exists = await p.model_exists("me", "poems")
            created = await p.create_model("me", "poems", "private", "cpu", "Poems")
            return exists, created

        exists, created = run(_call(replicate_provider(fake_time), flow))
    assert exists is False and created["url"] == "https://replicate.com/me/poems"
    assert json.loads(create.calls.last.request.content) == {
        "owner": "me",
        "name": "poems",
        "visibility": "private",
        "hardware": "cpu",
        "description": "Poems",
    }
    assert create.call_count == 1


COG_SCHEMA = {
    "openapi": "3.0.2",
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "title": "Input",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
                    "scheduler": {
                        "allOf": [{"$ref": "#/components/schemas/scheduler"}],
                        "default": "DDIM",
                        "x-order": 1,
                    },
                },
            },
            "TrainingInput": {
                "type": "object",
                "properties": {"train_data": {"type": "string", "format": "uri"}},
                "required": ["train_data"],
            },
            "scheduler": {"enum": ["DDIM", "K_EULER"], "type": "string", "title": "scheduler"},
        }
    },
}


def test_version_schema_is_fetched_once_and_resolves_refs(fake_time, tmp_path):
    import jsonschema

    version = {
        "id": V1,
        "created_at": "2022-04-26T19:29:04.418669Z",
        "cog_version": "0.8.6",
        "openapi_schema": COG_SCHEMA,
    }
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(f"/v1/models/stability-ai/sdxl/versions/{V1}").mock(
            return_value=httpx.Response(200, json=version)
        )

        async def flow(p):
            first = await p.get_version_schema("stability-ai/sdxl", V1)
            again = await p.get_version_schema("stability-ai/sdxl", f"stability-ai/sdxl:{V1}")
            training = await p.get_version_schema("stability-ai/sdxl", V1, job_kind="training")
            return first, again, training

        first, again, training = run(_call(replicate_provider(fake_time, schema_cache_dir=tmp_path), flow))
        assert route.call_count == 1
        # a new process reads the on-disk cache: versions are immutable
        cached = run(
            _call(
                replicate_provider(fake_time, schema_cache_dir=tmp_path),
                lambda p: p.get_version_schema("stability-ai/sdxl", V1),
            )
        )
        assert route.call_count == 1
    assert first == again == cached
    assert training["required"] == ["train_data"]
    jsonschema.validate({"prompt": "a corgi", "scheduler": "DDIM"}, first)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"prompt": "a corgi", "scheduler": "NOPE"}, first)


def test_version_without_schema(fake_time):
    version = {"id": V1, "created_at": "2022-04-26T19:29:04.418669Z", "cog_version": "0.3.0", "openapi_schema": None}
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(f"/v1/models/a/b/versions/{V1}").mock(return_value=httpx.Response(200, json=version))
        assert run(_call(replicate_provider(fake_time), lambda p: p.get_version_schema("a/b", V1))) is None


def test_a_held_create_gets_a_read_timeout_longer_than_the_hold(fake_time):
    from jobrunner.providers.sync_create import SyncCreatePolicy

    req = CreateRequest(job_kind="prediction", body={"input": {}}, version=V1)
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(return_value=httpx.Response(201, json=CREATED))
        run(_call(replicate_provider(fake_time, sync_create=SyncCreatePolicy(60)), lambda p: p.create(req)))
        sent = route.calls.last.request
        assert sent.headers["Prefer"] == "wait=60"
        assert sent.extensions["timeout"]["read"] >= 70 and sent.extensions["timeout"]["connect"] == 10
        run(_call(replicate_provider(fake_time, sync_create=SyncCreatePolicy(1)), lambda p: p.create(req)))
        assert route.calls.last.request.extensions["timeout"]["read"] == 30  # the default already covers it


def test_delete_version_sends_delete_and_treats_a_missing_version_as_done(fake_time):
    vid = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"  # the reference's example id
    other = "f" * 64
    path = f"/v1/models/me/poems/versions/{vid}"
    with respx.mock(base_url=REPLICATE) as mock:
        deleted = mock.delete(path).mock(return_value=httpx.Response(202))  # empty 202, as documented
        gone = mock.delete(f"/v1/models/me/poems/versions/{other}").mock(
            return_value=problem(404, {"detail": "The requested resource could not be found.", "status": 404})
        )
        refused = mock.delete(f"/v1/models/me/deployed/versions/{vid}").mock(
            return_value=problem(409, {"detail": "Version is used by deployment me/poet.", "status": 409})
        )

        async def flow(p):
            first = await p.delete_version("me/poems", vid)
            named = await p.delete_version(None, f"me/poems:{vid}")
            missing = await p.delete_version("me/poems", other)
            with pytest.raises(InvalidRequestError) as info:
                await p.delete_version("me/deployed", vid)
            with pytest.raises(UsageError):
                await p.delete_version("me/poems", "not-a-version")
            return first, named, missing, info.value

        first, named, missing, error = run(_call(replicate_provider(fake_time), flow))
    assert (first, named, missing) == (True, True, False)
    assert deleted.call_count == 2 and gone.call_count == 1 and refused.call_count == 1
    assert deleted.calls.last.request.headers["Authorization"].startswith("Bearer ")
    assert deleted.calls.last.request.content == b""
    assert "me/poet" in str(error)
