"""Models, versions, trainings and files on the Replicate wire of the local platform."""
from __future__ import annotations

import base64
import json
import re

from jobrunner.local.replicate.catalog import ECHO_VERSION, NGRAM_VERSION, SLEEP_VERSION

TRAIN_TEXT = "the moon rises over the sea and the sea answers the moon. " * 40


def _train(client, wait, train_data, *, order=4, destination="me/poems"):
    resp = client.post(
        f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
        json={"destination": destination, "input": {"train_data": train_data, "order": order}},
    )
    assert resp.status_code == 201, resp.text
    return wait(client, f"/v1/trainings/{resp.json()['id']}", timeout=30)


def _create_model(client, name="poems"):
    resp = client.post("/v1/models", json={"owner": "me", "name": name, "visibility": "private", "hardware": "cpu"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_builtin_models_and_versions(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["results"]}
    assert {"echo", "ngram", "sleep"} <= set(models)
    assert models["echo"]["latest_version"]["id"] == ECHO_VERSION
    ngram = client.get("/v1/models/jobrunner/ngram").json()
    assert ngram["owner"] == "jobrunner" and ngram["visibility"] == "public" and ngram["is_official"] is True
    version = client.get(f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}").json()
    assert version["id"] == NGRAM_VERSION and isinstance(version["cog_version"], str)
    schemas = version["openapi_schema"]["components"]["schemas"]
    assert {"Input", "Output", "TrainingInput"} <= set(schemas)
    assert set(schemas["TrainingInput"]["properties"]) == {"train_data", "order"}
    assert set(schemas["Input"]["properties"]) == {"prompt", "max_tokens", "temperature", "seed"}
    versions = client.get("/v1/models/jobrunner/sleep/versions").json()
    assert [v["id"] for v in versions["results"]] == [SLEEP_VERSION]
    assert client.get("/v1/models/jobrunner/nope").status_code == 404
    assert client.get(f"/v1/models/jobrunner/echo/versions/{SLEEP_VERSION}").status_code == 404


def test_create_model_rules(client):
    model = _create_model(client)
    assert model["owner"] == "me" and model["name"] == "poems" and model["latest_version"] is None
    assert model["run_count"] == 0
    assert (
        client.post(
            "/v1/models", json={"owner": "me", "name": "poems", "visibility": "private", "hardware": "cpu"}
        ).status_code
        == 409
    )
    bad = client.post("/v1/models", json={"owner": "me", "name": "Bad Name", "visibility": "secret", "hardware": "tpu"})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["invalid_fields"]} == {"name", "visibility", "hardware"}
    assert (
        client.post(
            "/v1/models", json={"owner": "someone", "name": "x", "visibility": "public", "hardware": "cpu"}
        ).status_code
        == 403
    )
    assert client.get("/v1/models/me/poems").json()["name"] == "poems"


def test_training_to_a_missing_destination_is_replicates_404(client):
    resp = client.post(
        f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
        json={"destination": "me/nowhere", "input": {"train_data": "abc"}},
    )
    assert resp.status_code == 404
    assert resp.json() == {"detail": "The specified training destination does not exist", "status": 404}
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_training_creates_a_version_that_generates_text(client, wait, live_platform):
    _create_model(client)
    done = _train(client, wait, TRAIN_TEXT, order=5)
    assert done["status"] == "succeeded", done
    assert done["destination"] == "me/poems"
    version_ref = done["output"]["version"]
    assert re.fullmatch(r"me/poems:[0-9a-f]{64}", version_ref)
    new_id = version_ref.split(":")[1]
    assert done["output"]["weights"].startswith(f"{live_platform.url}/v1/files/")
    assert "training a character 5-gram model" in done["logs"]
    assert list((live_platform.data_dir / "scratch").iterdir()) == []  # the inline text is not kept
    assert done["metrics"]["predict_time"] > 0

    model = client.get("/v1/models/me/poems").json()
    assert model["latest_version"]["id"] == new_id
    assert "TrainingInput" not in model["latest_version"]["openapi_schema"]["components"]["schemas"]
    weights = client.get(done["output"]["weights"]).json()
    assert weights["format"] == "jobrunner-ngram/1" and weights["order"] == 5

    outputs = []
    for _ in range(2):
        pred = client.post(
            "/v1/predictions",
            json={"version": version_ref, "input": {"prompt": "the moon", "seed": 7, "max_tokens": 60}},
            headers={"Prefer": "wait=20"},
        ).json()
        assert pred["status"] == "succeeded"
        outputs.append(pred["output"])
    assert outputs[0] == outputs[1] and isinstance(outputs[0], str) and len(outputs[0]) == 60
    other = client.post(
        "/v1/predictions", json={"version": new_id, "input": {"prompt": "the moon", "seed": 8, "max_tokens": 60}},
        headers={"Prefer": "wait=20"},
    ).json()
    assert other["output"] != outputs[0]
    # a training is also a prediction internally, like on Replicate
    assert client.get(f"/v1/predictions/{done['id']}").json()["id"] == done["id"]
    assert client.get("/v1/trainings").json()["results"][0]["id"] == done["id"]


def test_train_data_from_an_uploaded_file_and_a_data_uri(client, wait):
    _create_model(client)
    upload = client.post("/v1/files", files={"content": ("poems.txt", TRAIN_TEXT.encode(), "text/plain")}).json()
    by_file = _train(client, wait, upload["urls"]["get"])
    assert by_file["status"] == "succeeded", by_file
    data_uri = "data:text/plain;base64," + base64.b64encode(TRAIN_TEXT.encode()).decode()
    by_uri = _train(client, wait, data_uri)
    assert by_uri["status"] == "succeeded"
    w1 = client.get(by_file["output"]["weights"]).json()
    w2 = client.get(by_uri["output"]["weights"]).json()
    assert w1["counts"] == w2["counts"]  # same text, same model
    assert len(client.get("/v1/models/me/poems/versions").json()["results"]) == 2


def test_train_data_never_reads_arbitrary_paths_or_urls(client):
    _create_model(client)
    for value in ("file:///etc/passwd", "http://example.com/data.txt", "http://127.0.0.1/v1/files/nosuchfile"):
        resp = client.post(
            f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
            json={"destination": "me/poems", "input": {"train_data": value}},
        )
        assert resp.status_code == 422, value
        assert resp.json()["invalid_fields"][0]["field"] == "input.train_data"


def test_training_input_is_validated_and_untrainable_versions_refused(client):
    _create_model(client)
    resp = client.post(
        f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
        json={"destination": "me/poems", "input": {"train_data": "abc", "order": 11}},
    )
    assert resp.status_code == 422 and resp.json()["invalid_fields"][0]["field"] == "input.order"
    resp = client.post(
        f"/v1/models/jobrunner/echo/versions/{ECHO_VERSION}/trainings", json={"destination": "me/poems", "input": {}}
    )
    assert resp.status_code == 422


def test_cancel_a_training(client, wait):
    _create_model(client)
    big = "abcdefghij" * 200_000
    resp = client.post(
        f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
        json={"destination": "me/poems", "input": {"train_data": big, "order": 10}},
    )
    tid = resp.json()["id"]
    canceled = client.post(f"/v1/trainings/{tid}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert client.get("/v1/models/me/poems").json()["latest_version"] is None
    assert client.post("/v1/trainings/nope/cancel").status_code == 404


def test_files_upload_list_get_download_delete(client, live_platform):
    resp = client.post(
        "/v1/files",
        files={"content": ("../../etc/evil name.bin", b"\x00\x01binary\xff", "application/octet-stream")},
        data={"metadata": json.dumps({"purpose": "test"})},
    )
    assert resp.status_code == 201
    file = resp.json()
    assert file["name"] == "evil name.bin" and file["size"] == 9
    assert file["metadata"] == {"purpose": "test"}
    assert re.fullmatch(r"[0-9a-f]{64}", file["checksums"]["sha256"])
    assert file["urls"]["get"] == f"{live_platform.url}/v1/files/{file['id']}"
    # the stored name is made by the server, never the client's
    stored = sorted(p.name for p in (live_platform.data_dir / "files").iterdir())
    assert stored == [file["id"]]
    assert client.get(f"/v1/files/{file['id']}").json()["id"] == file["id"]
    assert [f["id"] for f in client.get("/v1/files").json()["results"]] == [file["id"]]
    download = client.get(f"/v1/files/{file['id']}/download")
    assert download.content == b"\x00\x01binary\xff"
    assert client.delete(f"/v1/files/{file['id']}").status_code == 204
    missing = client.get(f"/v1/files/{file['id']}")
    assert missing.status_code == 404 and missing.json()["detail"] == "File not found"
    assert client.post("/v1/files", content=b"x", headers={"content-type": "text/plain"}).status_code == 400


def test_account_hardware_and_webhook_secret(client, live_platform):
    assert client.get("/v1/account").json()["username"] == "me"
    assert {"sku": "cpu", "name": "CPU"} in client.get("/v1/hardware").json()
    secret = client.get("/v1/webhooks/default/secret").json()["key"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.split("_", 1)[1])) == 24
    assert client.get("/v1/webhooks/default/secret").json()["key"] == secret
    path = live_platform.data_dir / "webhook_secret"
    assert path.stat().st_mode & 0o777 == 0o600


def test_delete_model_only_own_and_without_versions(client, wait):
    _create_model(client, "empty")
    assert client.delete("/v1/models/me/empty").status_code == 204
    assert client.get("/v1/models/me/empty").status_code == 404
    assert client.delete("/v1/models/jobrunner/echo").status_code == 403
    _create_model(client)
    assert _train(client, wait, TRAIN_TEXT)["status"] == "succeeded"
    assert client.delete("/v1/models/me/poems").status_code == 409
    assert client.delete("/v1/models/me/nothing").status_code == 404
