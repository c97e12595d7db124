"""Deployments and version deletes on the Replicate wire of the local platform.

Shapes are compared with the examples of the official reference (reference/replicate/openapi.json:
`deployments.create|get|update|list`, `models.versions.delete`): the same keys at every level,
`current_release.number` counting releases, 200 on create and update, 204 on delete, 202 on a
version delete, 404 and 422 problem bodies like the other endpoints'.
"""
from __future__ import annotations

import re
from typing import Any

import pytest

from jobrunner.local.replicate.catalog import ECHO_VERSION, NGRAM_VERSION, SLEEP_VERSION

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TRAIN_TEXT = "the moon rises over the sea and the sea answers the moon. " * 40

# The example answer of deployments.get in the reference (openapi.json, copied verbatim).
EXAMPLE: dict[str, Any] = {
    "owner": "acme",
    "name": "my-app-image-generator",
    "current_release": {
        "number": 1,
        "model": "stability-ai/sdxl",
        "version": "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf",
        "created_at": "2024-02-15T16:32:57.018467Z",
        "created_by": {
            "type": "organization", "username": "acme", "name": "Acme Corp, Inc.",
            "avatar_url": "https://cdn.replicate.com/avatars/acme.png", "github_url": "https://github.com/acme",
        },
        "configuration": {"hardware": "gpu-t4", "min_instances": 1, "max_instances": 5},
    },
}


def _keys(value: Any) -> Any:
    """The nested key layout of a JSON object (values dropped)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    return None


def _create(client: Any, **overrides: Any) -> Any:
    body = {"name": "echoes", "model": "jobrunner/echo", "version": ECHO_VERSION, "hardware": "cpu",
            "min_instances": 0, "max_instances": 1, **overrides}
    return client.post("/v1/deployments", json=body)


def _train(client: Any, wait: Any, destination: str = "me/poems") -> str:
    model = client.post("/v1/models", json={"owner": "me", "name": destination.split("/")[1],
                                            "visibility": "private", "hardware": "cpu"})
    assert model.status_code == 201, model.text
    resp = client.post(f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
                       json={"destination": destination, "input": {"train_data": TRAIN_TEXT}})
    assert resp.status_code == 201, resp.text
    done = wait(client, f"/v1/trainings/{resp.json()['id']}", timeout=30)
    assert done["status"] == "succeeded", done
    return str(done["output"]["version"].split(":")[1])


def test_create_get_update_list_delete_shapes_and_releases(client: Any, live_platform: Any) -> None:
    created = _create(client)
    assert created.status_code == 200, created.text  # the reference documents 200, not 201
    body = created.json()
    assert _keys(body) == _keys(EXAMPLE)
    release = body["current_release"]
    assert (body["owner"], body["name"], release["number"]) == ("me", "echoes", 1)
    assert (release["model"], release["version"]) == ("jobrunner/echo", ECHO_VERSION)
    assert release["configuration"] == {"hardware": "cpu", "min_instances": 0, "max_instances": 1}
    assert release["created_by"]["type"] == "user" and release["created_by"]["username"] == "me"
    assert RFC3339.match(release["created_at"])
    assert client.get("/v1/deployments/me/echoes").json() == body

    updated = client.patch("/v1/deployments/me/echoes", json={"max_instances": 3})
    assert updated.status_code == 200, updated.text
    second = updated.json()["current_release"]
    assert second["number"] == 2 and second["configuration"]["max_instances"] == 3
    assert second["configuration"]["hardware"] == "cpu" and second["version"] == ECHO_VERSION
    again = client.patch("/v1/deployments/me/echoes", json={"hardware": "gpu-t4", "min_instances": 1})
    assert again.json()["current_release"]["number"] == 3
    assert again.json()["current_release"]["configuration"] == {"hardware": "gpu-t4", "min_instances": 1,
                                                                "max_instances": 3}

    assert _create(client, name="second").status_code == 200
    page = client.get("/v1/deployments").json()
    assert set(page) == {"next", "previous", "results"}
    assert [d["name"] for d in page["results"]] == ["second", "echoes"]  # newest first

    deleted = client.delete("/v1/deployments/me/echoes")
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get("/v1/deployments/me/echoes").status_code == 404
    assert client.delete("/v1/deployments/me/echoes").status_code == 404
    assert [d["name"] for d in client.get("/v1/deployments").json()["results"]] == ["second"]


@pytest.mark.platform_options(page_size=2)
def test_the_list_pages_with_cursors(client: Any) -> None:
    for i in range(5):
        assert _create(client, name=f"d{i}").status_code == 200
    names: list[str] = []
    url: str | None = "/v1/deployments"
    while url:
        page = client.get(url).json()
        names += [d["name"] for d in page["results"]]
        url = page["next"]
    assert names == ["d4", "d3", "d2", "d1", "d0"]


def test_bad_bodies_are_422_with_invalid_fields(client: Any) -> None:
    missing = client.post("/v1/deployments", json={"name": "x"})
    assert missing.status_code == 422
    fields = {f["field"] for f in missing.json()["invalid_fields"]}
    assert fields == {"model", "version", "hardware", "min_instances", "max_instances"}
    assert missing.headers["content-type"].startswith("application/problem+json")

    hardware = _create(client, hardware="gpu-h9000")
    assert hardware.status_code == 422 and "hardware must be one of cpu" in hardware.json()["detail"]
    bounds = _create(client, min_instances=6, max_instances=21)
    assert {f["field"] for f in bounds.json()["invalid_fields"]} == {"min_instances", "max_instances"}
    crossed = _create(client, min_instances=3, max_instances=1)
    assert crossed.status_code == 422 and "must not be more than max_instances" in crossed.json()["detail"]
    extra = _create(client, region="eu")
    assert extra.status_code == 422 and "Additional property region" in extra.json()["detail"]
    other_version = _create(client, version=SLEEP_VERSION)  # a version of another model
    assert other_version.status_code == 422 and "version does not exist" in other_version.json()["detail"]
    no_model = _create(client, model="me/nothing")
    assert no_model.status_code == 422 and "me/nothing does not exist" in no_model.json()["detail"]

    assert _create(client).status_code == 200
    twice = _create(client)
    assert twice.status_code == 409 and "me/echoes already exists" in twice.json()["detail"]
    bad_patch = client.patch("/v1/deployments/me/echoes", json={"model": "jobrunner/sleep"})
    assert bad_patch.status_code == 422  # the model of a deployment cannot change
    assert client.get("/v1/deployments/me/echoes").json()["current_release"]["number"] == 1
    gone = client.patch("/v1/deployments/me/nothing", json={"max_instances": 2})
    assert gone.status_code == 404 and gone.json()["detail"] == "The requested resource could not be found."


def test_deployment_predictions_run_the_current_release(client: Any, wait: Any) -> None:
    assert _create(client, model="jobrunner/sleep", version=SLEEP_VERSION).status_code == 200
    resp = client.post("/v1/deployments/me/echoes/predictions", json={"input": {"seconds": 0}},
                       headers={"Prefer": "wait=10"})
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["status"] == "succeeded" and resp.headers["Preference-Applied"] == "wait=10"
    assert (job["model"], job["version"], job["deployment"]) == ("jobrunner/sleep", SLEEP_VERSION, "me/echoes")
    assert job["output"] == {"slept": 0}
    assert client.get(f"/v1/predictions/{job['id']}").json()["deployment"] == "me/echoes"

    queued = client.post("/v1/deployments/me/echoes/predictions", json={"input": {"seconds": 0}})
    assert queued.status_code == 201 and queued.json()["status"] == "starting"
    assert wait(client, f"/v1/predictions/{queued.json()['id']}")["status"] == "succeeded"

    bad = client.post("/v1/deployments/me/echoes/predictions", json={"input": {"seconds": "long"}})
    assert bad.status_code == 422 and bad.json()["invalid_fields"][0]["field"] == "input.seconds"
    versioned = client.post("/v1/deployments/me/echoes/predictions", json={"version": ECHO_VERSION, "input": {}})
    assert versioned.status_code == 422  # the deployment picks the version
    missing = client.post("/v1/deployments/me/nothing/predictions", json={"input": {}})
    assert missing.status_code == 404


def test_a_new_release_switches_the_version_predictions_run(client: Any, wait: Any) -> None:
    first = _train(client, wait)
    resp = client.post("/v1/deployments", json={"name": "poet", "model": "me/poems", "version": first,
                                                "hardware": "cpu", "min_instances": 0, "max_instances": 1})
    assert resp.status_code == 200, resp.text
    ran = client.post("/v1/deployments/me/poet/predictions", json={"input": {"prompt": "the", "max_tokens": 5}},
                      headers={"Prefer": "wait"}).json()
    assert ran["version"] == first and ran["model"] == "me/poems" and len(ran["output"]) == 5
    unknown = client.patch("/v1/deployments/me/poet", json={"version": ECHO_VERSION})
    assert unknown.status_code == 422  # not a version of me/poems


def test_version_delete_answers_202_and_removes_the_version(client: Any, wait: Any) -> None:
    version = _train(client, wait)
    ran = client.post("/v1/predictions", json={"version": version, "input": {"max_tokens": 3}},
                      headers={"Prefer": "wait"}).json()
    assert ran["status"] == "succeeded"
    weights = client.get("/v1/trainings").json()["results"][0]["output"]["weights"]
    assert client.get(weights).status_code == 200

    deployed = client.post("/v1/deployments", json={"name": "poet", "model": "me/poems", "version": version,
                                                    "hardware": "cpu", "min_instances": 0, "max_instances": 1})
    assert deployed.status_code == 200
    refused = client.delete(f"/v1/models/me/poems/versions/{version}")
    assert refused.status_code == 409 and "deployment me/poet" in refused.json()["detail"]
    assert client.delete("/v1/deployments/me/poet").status_code == 204

    resp = client.delete(f"/v1/models/me/poems/versions/{version}")
    assert resp.status_code == 202 and resp.content == b""
    assert client.get(f"/v1/models/me/poems/versions/{version}").status_code == 404
    assert client.get("/v1/models/me/poems").json()["latest_version"] is None
    assert client.get(f"/v1/predictions/{ran['id']}").status_code == 404  # its predictions go with it
    assert client.get(weights).status_code == 404  # and its weights
    again = client.post("/v1/predictions", json={"version": version, "input": {}})
    assert again.status_code == 422 and "version does not exist" in again.json()["detail"]
    assert client.delete(f"/v1/models/me/poems/versions/{version}").status_code == 404
    # A model without versions can now be deleted (the documented clean-up order).
    assert client.delete("/v1/models/me/poems").status_code == 204


def test_versions_of_built_in_models_and_unknown_ones_cannot_be_deleted(client: Any) -> None:
    official = client.delete(f"/v1/models/jobrunner/echo/versions/{ECHO_VERSION}")
    assert official.status_code == 403 and "your own models" in official.json()["detail"]
    assert client.get(f"/v1/models/jobrunner/echo/versions/{ECHO_VERSION}").status_code == 200
    wrong_model = client.delete(f"/v1/models/jobrunner/sleep/versions/{ECHO_VERSION}")
    assert wrong_model.status_code == 404
    assert client.delete("/v1/models/me/nothing/versions/" + "0" * 64).status_code == 404


def test_versions_of_public_models_cannot_be_deleted(client: Any, wait: Any) -> None:
    model = client.post("/v1/models", json={"owner": "me", "name": "open", "visibility": "public", "hardware": "cpu"})
    assert model.status_code == 201
    resp = client.post(f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
                       json={"destination": "me/open", "input": {"train_data": TRAIN_TEXT}})
    done = wait(client, f"/v1/trainings/{resp.json()['id']}", timeout=30)
    version = done["output"]["version"].split(":")[1]
    refused = client.delete(f"/v1/models/me/open/versions/{version}")
    assert refused.status_code == 403 and "private models" in refused.json()["detail"]
    assert client.get(f"/v1/models/me/open/versions/{version}").status_code == 200
