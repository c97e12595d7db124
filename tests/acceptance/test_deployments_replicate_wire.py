"""A Replicate deployment through the real CLI and the real reconciler, the Replicate API mocked (respx)
with payloads shaped like the documented ones (tests/providers/fixtures/replicate/deployments.json).

Create exactly once (a create whose answer is lost is found by name, never sent twice), wait until
it answers, change `max_instances` in place (a PATCH of the updatable fields, same deployment), run
a batch on the deployment (its predictions endpoint), and delete it when its manifest is removed.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.helpers.cli import run_cli

BASE = "https://api.replicate.test"
TOKEN = "r8_TESTTOKENabcdefghijklmnopqrstuv"
FIXTURES = Path(__file__).resolve().parents[1] / "providers" / "fixtures" / "replicate"
DOC = json.loads((FIXTURES / "deployments.json").read_text())
PREDICTION = json.loads((FIXTURES / "prediction_get_succeeded.json").read_text())
NAME = "my-app-image-generator"
PATH = f"/v1/deployments/acme/{NAME}"
VERSION = DOC["create_deployment"]["request"]["body"]["version"]

MANIFEST = f"""apiVersion: jobrunner/v1
kind: Deployment
metadata: {{name: {NAME}}}
spec:
  provider: replicate
  model: stability-ai/sdxl
  version: {VERSION}
  hardware: gpu-t4
  min_instances: 0
  max_instances: MAX
"""
BATCH = """---
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {name: evaluate}
spec:
  provider: replicate
  deployment: ${Deployment.my-app-image-generator.output.name}
  inputs:
    - {key: dog, prompt: "a dog"}
  output_file: out/evaluate.jsonl
"""


def _json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


class FakeReplicate:
    """The deployment as Replicate would echo it (the documented body, our configuration)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.lose_first_create = False

    def served(self, max_instances: int) -> dict[str, Any]:
        body = copy.deepcopy(DOC["create_deployment"]["response"]["body"])
        body["current_release"]["configuration"].update(min_instances=0, max_instances=max_instances)
        return body

    def create(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        self.body = self.served(sent["max_instances"])
        if self.lose_first_create:
            self.lose_first_create = False
            raise httpx.ReadError("connection reset after the request was sent")
        return _json(self.body)

    def get(self, request: httpx.Request) -> httpx.Response:
        return _json(self.body) if self.body else _json({"detail": "Not found."}, 404)

    def listing(self, request: httpx.Request) -> httpx.Response:
        return _json({"next": None, "previous": None, "results": [self.body] if self.body else []})

    def patch(self, request: httpx.Request) -> httpx.Response:
        assert self.body is not None
        changes = json.loads(request.content)
        self.body["current_release"]["number"] += 1
        self.body["current_release"]["configuration"].update(
            {k: v for k, v in changes.items() if k in ("hardware", "min_instances", "max_instances")})
        return _json(self.body)

    def delete(self, request: httpx.Request) -> httpx.Response:
        self.body = None
        return httpx.Response(204)


@pytest.fixture
def replicate(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", BASE)
    monkeypatch.setenv("JOBRUNNER_LOOKUP_WINDOW", "0")
    fake = FakeReplicate()
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        routes = {
            "create": mock.post("/v1/deployments").mock(side_effect=fake.create),
            "list": mock.get("/v1/deployments").mock(side_effect=fake.listing),
            "get": mock.get(PATH).mock(side_effect=fake.get),
            "patch": mock.patch(PATH).mock(side_effect=fake.patch),
            "delete": mock.delete(PATH).mock(side_effect=fake.delete),
            "predict": mock.post(f"{PATH}/predictions").mock(return_value=_json(PREDICTION)),
            "prediction": mock.get(f"/v1/predictions/{PREDICTION['id']}").mock(return_value=_json(PREDICTION)),
        }
        yield fake, routes


def _file(ws: Path) -> Path:
    (ws / "specs").mkdir(exist_ok=True)
    return ws / "specs" / "d.yaml"


def _manifest(max_instances: int) -> str:
    return MANIFEST.replace("MAX", str(max_instances))


def _state(ws: Path) -> dict[str, Any]:
    return dict(json.loads((ws / ".jobrunner/state.json").read_text())["addresses"])


def test_create_update_in_place_batch_and_delete(workspace: Path, replicate: Any) -> None:
    fake, routes = replicate
    _file(workspace).write_text(_manifest(1))
    r = run_cli("apply", "--auto-approve", "specs/")
    assert r.code == 0, r.output
    assert routes["create"].call_count == 1
    assert json.loads(routes["create"].calls[0].request.content) == {
        "name": NAME, "model": "stability-ai/sdxl", "version": VERSION, "hardware": "gpu-t4",
        "min_instances": 0, "max_instances": 1}
    st = _state(workspace)[f"Deployment/{NAME}"]
    assert st["remote_id"] == f"acme/{NAME}" and st["status"] == "succeeded"
    assert st["outputs"]["name"] == f"acme/{NAME}" and st["outputs"]["version"] == VERSION
    assert run_cli("plan", "--detailed-exitcode", "specs/").code == 0

    _file(workspace).write_text(_manifest(3) + BATCH)
    plan = run_cli("plan", "specs/")
    assert f"~ Deployment/{NAME}" in plan.output and "max_instances: 1 -> 3" in plan.output, plan.output
    r = run_cli("apply", "--auto-approve", "specs/")
    assert r.code == 0, r.output
    assert routes["create"].call_count == 1 and routes["patch"].call_count == 1
    assert json.loads(routes["patch"].calls[0].request.content)["max_instances"] == 3
    assert "1 updated" in r.output
    assert fake.body["current_release"]["configuration"]["max_instances"] == 3
    assert routes["predict"].call_count == 1
    assert json.loads(routes["predict"].calls[0].request.content)["input"] == {"prompt": "a dog"}
    (row,) = [json.loads(x) for x in (workspace / "specs/out/evaluate.jsonl").read_text().splitlines()]
    assert row["key"] == "dog" and row["status"] == "succeeded"
    assert run_cli("plan", "--detailed-exitcode", "specs/").code == 0

    _file(workspace).unlink()  # removed on purpose
    r = run_cli("apply", "--auto-approve", "specs/")
    assert r.code == 0, r.output
    assert routes["delete"].call_count == 1 and "1 deleted" in r.output
    assert f"Deployment/{NAME}" not in _state(workspace)


def test_a_create_whose_answer_is_lost_is_found_by_name_not_sent_twice(workspace: Path, replicate: Any) -> None:
    fake, routes = replicate
    fake.lose_first_create = True
    _file(workspace).write_text(_manifest(1))
    r = run_cli("apply", "--auto-approve", "specs/")
    assert r.code == 0, r.output
    assert routes["create"].call_count == 1 and routes["list"].call_count >= 1
    st = _state(workspace)[f"Deployment/{NAME}"]
    assert st["remote_id"] == f"acme/{NAME}" and st["intent"] is None


def test_prevent_destroy_refuses_removal_before_anything_is_sent(workspace: Path, replicate: Any) -> None:
    fake, routes = replicate
    _file(workspace).write_text(_manifest(1) + "  lifecycle: {prevent_destroy: true}\n")
    assert run_cli("apply", "--auto-approve", "specs/").code == 0
    _file(workspace).unlink()
    r = run_cli("apply", "--auto-approve", "specs/")
    assert r.code == 1, r.output
    assert "prevent_destroy" in r.output and f"Deployment/{NAME}" in r.output and "Traceback" not in r.output
    assert routes["delete"].call_count == 0 and f"Deployment/{NAME}" in _state(workspace)


def test_json_events_of_an_update_and_a_delete_follow_the_documented_schema(workspace: Path, replicate: Any) -> None:
    from tests.acceptance.test_json_events import events_of

    _file(workspace).write_text(_manifest(1))
    assert run_cli("apply", "--auto-approve", "specs/").code == 0
    _file(workspace).write_text(_manifest(2))
    updated = events_of(run_cli("apply", "--auto-approve", "--json", "specs/").output)
    assert updated[0]["changes"] == [{"address": f"Deployment/{NAME}", "action": "update",
                                      "reason": "max_instances (1 -> 2) changed: updated in place"}]
    assert [e["status"] for e in updated if e["type"] == "status"] == ["pending", "succeeded"]
    assert updated[-1]["outcomes"] == {"updated": 1} and updated[-1]["exit_code"] == 0
    _file(workspace).unlink()
    deleted = events_of(run_cli("apply", "--auto-approve", "--json", "specs/").output)
    assert deleted[0]["changes"][0]["action"] == "delete"
    assert [e["status"] for e in deleted if e["type"] == "status"] == ["forgotten"]
    assert deleted[-1]["outcomes"] == {"deleted": 1}
