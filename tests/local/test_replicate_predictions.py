"""Predictions on the Replicate wire of the local platform: create, get, cancel, wait, deadlines, errors."""
from __future__ import annotations

import re
import time

import pytest

from jobrunner.local.replicate.catalog import ECHO_VERSION, NGRAM_VERSION, SLEEP_VERSION

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
REQUIRED = {"id", "model", "version", "input", "output", "data_removed", "error", "status", "created_at", "urls"}


def test_echo_prediction_lifecycle_and_shape(client, live_platform, wait):
    resp = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"text": "hi", "n": [1, 2]}})
    assert resp.status_code == 201
    created = resp.json()
    assert set(created) >= REQUIRED
    assert created["status"] == "starting"
    assert created["model"] == "jobrunner/echo" and created["version"] == ECHO_VERSION
    assert re.fullmatch(r"[a-z2-7]{26}", created["id"])
    assert RFC3339.match(created["created_at"])
    assert created["urls"]["get"] == f"{live_platform.url}/v1/predictions/{created['id']}"
    assert created["urls"]["cancel"] == created["urls"]["get"] + "/cancel"
    assert created["source"] == "api" and created["data_removed"] is False

    done = wait(client, f"/v1/predictions/{created['id']}")
    assert done["status"] == "succeeded"
    assert done["output"] == {"text": "hi", "n": [1, 2]}
    assert RFC3339.match(done["started_at"]) and RFC3339.match(done["completed_at"])
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["metrics"]["predict_time"] >= 0 and done["metrics"]["total_time"] >= done["metrics"]["predict_time"]


def test_urls_follow_the_requests_own_host(live_platform):
    host_url = live_platform.url.replace("127.0.0.1", "localhost")
    with live_platform.client() as c:
        c.base_url = host_url
        body = c.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}}).json()
    assert body["urls"]["get"].startswith(host_url + "/v1/predictions/")


def test_version_forms_and_model_scoped_create(client, wait):
    for version in (ECHO_VERSION, f"jobrunner/echo:{ECHO_VERSION}"):
        resp = client.post("/v1/predictions", json={"version": version, "input": {"a": 1}})
        assert resp.status_code == 201, resp.text
    resp = client.post("/v1/models/jobrunner/echo/predictions", json={"input": {"b": 2}})
    assert resp.status_code == 201
    assert wait(client, f"/v1/predictions/{resp.json()['id']}")["output"] == {"b": 2}
    assert client.post("/v1/models/me/nothing/predictions", json={"input": {}}).status_code == 404


def test_unknown_version_is_422(client):
    for version in ("0" * 64, f"jobrunner/sleep:{ECHO_VERSION}", "not-a-version"):
        resp = client.post("/v1/predictions", json={"version": version, "input": {}})
        assert resp.status_code == 422
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["title"] == "Invalid version or not permitted"


def test_unknown_top_level_field_is_422_with_invalid_fields(client):
    resp = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}, "signal": {}})
    assert resp.status_code == 422
    body = resp.json()
    assert body["title"] == "Input validation failed"
    assert body["invalid_fields"] == [
        {
            "type": "additional_property_not_allowed",
            "field": "",
            "description": "Additional property signal is not allowed",
        }
    ]
    assert "signal" in body["detail"]


def test_input_failing_the_version_schema_is_422_naming_the_field(client):
    resp = client.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": "soon", "colour": 1}})
    assert resp.status_code == 422
    fields = {f["field"] for f in resp.json()["invalid_fields"]}
    assert fields == {"input.seconds", "input.colour"}
    resp = client.post("/v1/predictions", json={"version": NGRAM_VERSION, "input": {"temperature": -1}})
    assert resp.status_code == 422 and resp.json()["invalid_fields"][0]["field"] == "input.temperature"
    resp = client.post("/v1/predictions", json={"version": ECHO_VERSION})
    assert resp.status_code == 422 and resp.json()["invalid_fields"][0]["field"] == "input"


def test_bad_json_and_unknown_routes(client):
    resp = client.post("/v1/predictions", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    resp = client.get("/v1/predictions/doesnotexist")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "The requested resource could not be found.", "status": 404}
    assert client.get("/v1/nothing-here").status_code == 404


def test_prefer_wait_returns_the_finished_prediction(client):
    resp = client.post(
        "/v1/predictions",
        json={"version": SLEEP_VERSION, "input": {"seconds": 0.2, "log_lines": 2}},
        headers={"Prefer": "wait=10"},
    )
    assert resp.status_code == 201
    assert resp.headers["preference-applied"] == "wait=10"
    body = resp.json()
    assert body["status"] == "succeeded" and body["output"] == {"slept": 0.2}
    assert body["logs"].splitlines()[-1].startswith("100%|##########| 2/2 [")  # a tqdm line


def test_prefer_wait_gives_up_after_n_seconds(client):
    started = time.monotonic()
    resp = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 5}}, headers={"Prefer": "wait=1"}
    )
    assert 0.9 <= time.monotonic() - started < 10
    # still running: reported as `starting`, as Replicate does (the official client then polls)
    assert resp.json()["status"] == "starting"
    client.post(f"/v1/predictions/{resp.json()['id']}/cancel")


def test_cancel_stops_a_running_job_within_a_second(client, wait):
    job = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 30, "log_lines": 300}}
    ).json()
    running = wait(client, f"/v1/predictions/{job['id']}", until=("processing",))
    assert running["status"] == "processing"
    started = time.monotonic()
    resp = client.post(f"/v1/predictions/{job['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["status"] == "canceled"
    assert time.monotonic() - started < 10.0  # not the 30 s job, even on a busy machine
    body = client.get(f"/v1/predictions/{job['id']}").json()
    assert body["status"] == "canceled" and body["completed_at"] is not None
    # idempotent on a terminal job
    again = client.post(f"/v1/predictions/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["completed_at"] == body["completed_at"]
    # the pool replaced the killed worker: the next job still runs
    nxt = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 0}}, headers={"Prefer": "wait=10"}
    )
    assert nxt.json()["status"] == "succeeded"


def test_logs_stream_while_the_job_runs(client, wait):
    job = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 3, "log_lines": 30}}
    ).json()
    deadline = time.monotonic() + 10
    body = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/predictions/{job['id']}").json()
        if "| 2/30 [" in (body["logs"] or ""):
            break
        time.sleep(0.05)
    assert body["status"] == "processing" and "| 2/30 [" in body["logs"]
    client.post(f"/v1/predictions/{job['id']}/cancel")


def test_failing_model_reports_its_error(client, wait):
    job = client.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 0, "fail": True}}).json()
    body = wait(client, f"/v1/predictions/{job['id']}")
    assert body["status"] == "failed"
    assert body["error"] == "sleep: failed on request (fail=true)"
    assert body["output"] is None


@pytest.mark.platform_options(workers=1)
def test_a_stuck_model_never_stalls_the_api(client):
    stuck = client.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 60}}).json()
    started = time.monotonic()
    for _ in range(20):
        assert client.get("/v1/account").status_code == 200
    echo = client.post(
        "/v1/predictions", json={"version": ECHO_VERSION, "input": {"x": 1}}, headers={"Prefer": "wait=5"}
    )
    assert echo.json()["status"] == "succeeded"
    assert time.monotonic() - started < 30  # a stalled loop would wait out the 60 s model
    assert client.get(f"/v1/predictions/{stuck['id']}").json()["status"] in ("starting", "processing")


def test_cancel_after_sets_a_deadline_and_cancels(client, wait):
    resp = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 30}}, headers={"Cancel-After": "0.5"}
    )
    assert resp.status_code == 201
    body = resp.json()
    assert RFC3339.match(body["deadline"]) and body["deadline"] > body["created_at"]
    done = wait(client, f"/v1/predictions/{body['id']}", timeout=10)
    assert done["status"] == "canceled"


@pytest.mark.platform_options(workers=1)
def test_cancel_after_on_a_queued_job_aborts_it(client, wait):
    blocker = client.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 30}}).json()
    queued = client.post(
        "/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 1}}, headers={"Cancel-After": "0.3"}
    ).json()
    done = wait(client, f"/v1/predictions/{queued['id']}", timeout=10)
    assert done["status"] == "aborted" and done["started_at"] is None
    client.post(f"/v1/predictions/{blocker['id']}/cancel")


def test_cancel_after_validation(client):
    bad = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}}, headers={"Cancel-After": "soon"})
    assert bad.status_code == 422
    for value in ("1h30m", "90s", "5m", "2"):
        ok = client.post(
            "/v1/predictions", json={"version": ECHO_VERSION, "input": {}}, headers={"Cancel-After": value}
        )
        assert ok.status_code == 201, value


@pytest.mark.slow  # waits out the wait window
def test_official_client_run_keeps_polling_after_the_wait_window(live_platform):
    import replicate

    rc = replicate.Client(api_token=live_platform.token, base_url=live_platform.url)
    output = rc.run(f"jobrunner/sleep:{SLEEP_VERSION}", input={"seconds": 1.5}, wait=1)
    assert output == {"slept": 1.5}
