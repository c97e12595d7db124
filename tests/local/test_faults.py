"""Each fault knob of the local platform: latency, error rate, 429 rate limits, dropped
connections after a committed create, the request-size limit; flags, environment and admin route."""
from __future__ import annotations

import time

import httpx
import pytest

from jobrunner.local.faults import FaultConfigError, FaultState, parse_faults
from jobrunner.local.replicate.catalog import ECHO_VERSION

pytestmark = pytest.mark.slow  # fault injection: latency, drops, 429s (full suite only)


def test_faults_are_off_by_default_and_changeable_at_runtime(live_platform, client):
    config = client.get("/_admin/faults").json()
    assert config["error_rate"] == 0 and config["rate_limit"] is None and config["latency_ms"] == 0
    assert live_platform.set_faults(error_rate=1.0)["error_rate"] == 1.0
    assert client.get("/v1/account").status_code in (500, 503)
    assert live_platform.set_faults(reset=True)["error_rate"] == 0
    assert client.get("/v1/account").status_code == 200
    bad = client.post("/_admin/faults", json={"no_such_knob": 1})
    assert bad.status_code == 422 and "no_such_knob" in bad.json()["detail"]


def test_latency(live_platform, client):
    live_platform.set_faults(latency_ms=1000)
    started = time.monotonic()
    assert client.get("/v1/account").status_code == 200
    assert time.monotonic() - started >= 1.0
    live_platform.set_faults(latency_ms=60_000)  # delayed, it would take a minute: unmistakable
    started = time.monotonic()
    client.get("/_admin/faults")  # admin routes are never delayed
    assert time.monotonic() - started < 30.0
    live_platform.set_faults(latency_ms=0)


def test_error_statuses_in_each_wire_shape(live_platform, client):
    live_platform.set_faults(fail_next=2, error_statuses=[503])
    resp = client.get("/v1/account")
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 503
    emissary = httpx.get(f"{live_platform.url}/v1/projects", headers={"X-API-Key": live_platform.token})
    assert emissary.status_code == 503 and emissary.json()["status"] == 503 and "error" in emissary.json()
    assert client.get("/v1/account").status_code == 200  # only the next 2 failed


def test_error_rate_is_a_fraction(live_platform, client):
    live_platform.set_faults(error_rate=0.5, seed=1)
    statuses = [client.get("/v1/account").status_code for _ in range(60)]
    failures = sum(s in (500, 503) for s in statuses)
    assert 10 < failures < 50 and statuses.count(200) == 60 - failures


def test_rate_limit_429_with_retry_after_separates_creates_from_others(live_platform, client):
    # One create a minute refills the bucket: however slowly a busy machine sends these, the third is over.
    live_platform.set_faults(rate_limit="custom", create_per_minute=1, other_per_minute=6000, burst=2)
    codes = [client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    throttled = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}})
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    body = throttled.json()
    assert body["status"] == 429 and body["retry_after"] == int(throttled.headers["retry-after"])
    assert body["detail"].startswith("Request was throttled.")
    ok = client.get("/v1/predictions")  # the "other" bucket is separate
    assert ok.status_code == 200 and "ratelimit-remaining" in ok.headers


def test_replicate_preset_allows_bursts_then_limits():
    state = FaultState()
    state.update({"rate_limit": "replicate"})
    results = [state.decide("create", 100.0).status for _ in range(150)]
    assert results[:100] == [None] * 100  # ten seconds' worth of 600/min as a burst
    assert results[100:] == [429] * 50
    assert state.decide("create", 101.0).status is None  # 600/min refills 10 a second
    assert state.decide("other", 100.0).status is None


def test_drop_after_create_commits_the_job_but_drops_the_connection(live_platform, client):
    live_platform.set_faults(drop_next_creates=1)
    with pytest.raises(httpx.TransportError):
        client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"marker": "dropped"}})
    listed = client.get("/v1/predictions").json()["results"]
    assert [p["input"] for p in listed] == [{"marker": "dropped"}]
    resp = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}})
    assert resp.status_code == 201  # only the next one was dropped


def test_drop_every_nth_create_is_deterministic(live_platform, client):
    live_platform.set_faults(drop_every_nth_create=3)
    outcomes = []
    for i in range(7):
        try:
            outcomes.append(
                client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"i": i}}).status_code
            )
        except httpx.TransportError:
            outcomes.append("dropped")
    assert outcomes == [201, 201, "dropped", 201, 201, "dropped", 201]
    assert len(client.get("/v1/predictions").json()["results"]) == 7  # every dropped create was committed


@pytest.mark.slow  # waits out the list lag
def test_list_lag_hides_young_jobs_from_lists_of_both_wires_but_not_from_get(live_platform, client):
    emissary = {"X-API-Key": live_platform.token}
    project = httpx.post(f"{live_platform.url}/v1/projects", json={"name": "lag"}, headers=emissary).json()["id"]
    # A lag far longer than any stall of a loaded machine between a create and the list that
    # follows (with a 2 s lag, a run stalled for 2 s would see the job already), then shortened.
    live_platform.set_faults(list_lag_s=60)
    created = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"marker": "young"}}).json()
    assert client.get("/v1/predictions").json()["results"] == []
    assert client.get(f"/v1/predictions/{created['id']}").json()["id"] == created["id"]
    jobs_url = f"{live_platform.url}/v1/projects/{project}/training-jobs"
    dataset = httpx.post(f"{live_platform.url}/v1/projects/{project}/datasets", headers=emissary,
                         files={"file": ("d.jsonl", b'{"prompt": "a", "completion": "b"}\n')}).json()
    job = httpx.post(
        jobs_url, headers=emissary, json={"base_model": "jobrunner-ngram", "train_dataset_id": dataset["id"]}
    )
    assert job.status_code == 201, job.text
    assert httpx.get(jobs_url, headers=emissary).json() == []
    live_platform.set_faults(list_lag_s=1)
    time.sleep(2.1)  # Emissary times are whole seconds: its list may hide a job up to a second longer
    assert [p["id"] for p in client.get("/v1/predictions").json()["results"]] == [created["id"]]
    assert [j["id"] for j in httpx.get(jobs_url, headers=emissary).json()] == [job.json()["id"]]
    live_platform.set_faults(reset=True)
    assert live_platform.set_faults()["list_lag_s"] == 0


def test_request_size_limit_is_413(live_platform, client):
    live_platform.set_faults(max_body_bytes=1000)
    big = {"version": ECHO_VERSION, "input": {"blob": "x" * 2000}}
    resp = client.post("/v1/predictions", json=big)
    assert resp.status_code == 413 and resp.json()["status"] == 413
    chunked = client.post(
        "/v1/predictions",
        content=iter([b'{"version": "', b"x" * 1500, b'"}']),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413
    assert client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}}).status_code == 201


def test_parse_faults_and_errors():
    assert parse_faults("latency_ms=50, error_rate=0.1;rate_limit=replicate") == {
        "latency_ms": 50.0, "error_rate": 0.1, "rate_limit": "replicate"
    }
    assert parse_faults("error_statuses=500|503") == {"error_statuses": [500, 503]}
    assert parse_faults("") == {}
    for bad in ("latency_ms", "colour=red", "error_rate=2", "drop_after_create=-1", "rate_limit=lots"):
        with pytest.raises(FaultConfigError):
            parse_faults(bad)


def test_environment_sets_faults_at_start(tmp_path, monkeypatch):
    from jobrunner.local.app import create_app

    monkeypatch.setenv("JOBRUNNER_LOCAL_FAULTS", "latency_ms=25,rate_limit=replicate")
    app = create_app(tmp_path, "t")
    config = app.state.platform.faults.config
    assert config.latency_ms == 25 and config.rate_limit == "replicate"
    app2 = create_app(tmp_path / "b", "t", faults={"error_rate": 0.5})
    assert app2.state.platform.faults.config.error_rate == 0.5 and app2.state.platform.faults.config.latency_ms == 25


async def _in_process_drop(tmp_path):
    from jobrunner.local.app import create_app

    app = create_app(tmp_path, "t", faults="drop_next_creates=1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": "Bearer t"}
    ) as c:
        with pytest.raises(httpx.TransportError):
            await c.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}})
        listed = (await c.get("/v1/predictions")).json()["results"]
    await app.state.platform.shutdown()
    return listed


def test_drop_after_create_in_process_raises_a_transport_error(tmp_path):
    import asyncio

    assert len(asyncio.run(_in_process_drop(tmp_path))) == 1
