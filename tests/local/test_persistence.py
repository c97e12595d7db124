"""Jobs, models, versions and files survive a restart; jobs caught running come back failed."""
from __future__ import annotations

from jobrunner.local.replicate.catalog import ECHO_VERSION, NGRAM_VERSION, SLEEP_VERSION
from jobrunner.local.replicate.service import RESTART_ERROR
from tests.local.helpers import TOKEN, serve_app, wait_for


def test_state_survives_a_restart_and_running_jobs_fail(tmp_path):
    data_dir = tmp_path / "platform"
    with serve_app(data_dir) as live, live.client() as c:
        echo = c.post(
            "/v1/predictions", json={"version": ECHO_VERSION, "input": {"k": "v"}}, headers={"Prefer": "wait=5"}
        ).json()
        c.post("/v1/models", json={"owner": "me", "name": "poems", "visibility": "private", "hardware": "cpu"})
        training = c.post(
            f"/v1/models/jobrunner/ngram/versions/{NGRAM_VERSION}/trainings",
            json={"destination": "me/poems", "input": {"train_data": "la la land " * 30}},
        ).json()
        trained = wait_for(c, f"/v1/trainings/{training['id']}")
        upload = c.post("/v1/files", files={"content": ("a.txt", b"hello", "text/plain")}).json()
        running = c.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 60}}).json()
        wait_for(c, f"/v1/predictions/{running['id']}", until=("processing",))

    with serve_app(data_dir) as live, live.client() as c:
        assert c.get(f"/v1/predictions/{echo['id']}").json()["output"] == {"k": "v"}
        again = c.get(f"/v1/predictions/{running['id']}").json()
        assert again["status"] == "failed" and again["error"] == RESTART_ERROR and again["completed_at"]
        assert c.get("/v1/models/me/poems").json()["latest_version"]["id"] == trained["output"]["version"].split(":")[1]
        assert c.get(f"/v1/files/{upload['id']}/download").content == b"hello"
        # a restarted platform answers on another port: the weights URL follows the request's host
        weights = c.get(f"/v1/trainings/{training['id']}").json()["output"]["weights"]
        assert weights.startswith(live.url + "/v1/files/") and c.get(weights).json()["format"] == "jobrunner-ngram/1"
        pred = c.post(
            "/v1/predictions", json={"version": trained["output"]["version"], "input": {"seed": 1, "max_tokens": 10}},
            headers={"Prefer": "wait=10"},
        ).json()
        assert pred["status"] == "succeeded" and len(pred["output"]) == 10
        assert len(c.get("/v1/predictions").json()["results"]) == 3
        # built-ins are seeded once, not duplicated
        assert [m["name"] for m in c.get("/v1/models").json()["results"]].count("echo") == 1
        assert live.token == TOKEN
