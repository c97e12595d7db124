"""The Emissary wire of the local platform over real HTTP: codes, shapes, auth, training runs."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.local.helpers import serve_app
from tests.platform_fixture import LivePlatform

STATUSES = {"Pending", "Running", "Success", "Failed", "TimedOut", "Cancelled"}
OCTET = {"Content-Type": "application/octet-stream"}  # what the SDK sends with empty bodies

POEM = "\n".join(
    json.dumps({"text": t})
    for t in [
        "The moon rises over the quiet sea, and the stars answer with a slow light.",
        "At dawn the birds begin again; at dusk the river keeps its counsel.",
        "Small models learn the shape of words from the letters that came before them.",
    ]
    * 10
).encode()


def emissary(live: LivePlatform, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"X-API-Key": live.token if key is None else key}, timeout=30)


@pytest.fixture
def em(live_platform: LivePlatform) -> Iterator[httpx.Client]:
    with emissary(live_platform) as c:
        yield c


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """One platform for the tests that only read their own fresh objects (keeps the suite fast)."""
    with serve_app(tmp_path_factory.mktemp("shared") / "platform") as live:
        yield live


@pytest.fixture(scope="module")
def shared_em(shared: LivePlatform) -> Iterator[httpx.Client]:
    with emissary(shared) as c:
        yield c


def make_project(em: httpx.Client, name: str = "p") -> str:
    r = em.post("/v1/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def upload(em: httpx.Client, pid: str, data: bytes = POEM, name: str = "train") -> str:
    r = em.post(
        f"/v1/projects/{pid}/datasets", data={"name": name}, files={"file": ("train.jsonl", data, "application/jsonl")}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_status(em: httpx.Client, path: str, wanted: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = em.get(path).json()
        if body["status"] in wanted:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}])
def test_missing_empty_or_wrong_key_is_401(shared: LivePlatform, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=shared.url, headers=headers) as c:
        r = c.get("/v1/projects")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"status": 401, "error": "Unauthorized"}


def test_models_list_is_emissary_with_api_key_and_replicate_with_bearer(
    live_platform: LivePlatform, em: httpx.Client
) -> None:
    r = em.get("/v1/models", headers=OCTET)
    assert r.status_code == 200
    models = r.json()
    assert isinstance(models, list) and models[0]["name"] == "jobrunner-ngram" and models[0]["type"] == "completion"
    assert all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in models[0]["parameter_template"].values()
    )
    with live_platform.client() as rep:
        page = rep.get("/v1/models").json()
    assert set(page) >= {"next", "previous", "results"}
    assert em.get("/v1/models/jobrunner-ngram").json()["name"] == "jobrunner-ngram"
    missing = em.get("/v1/models/Llama-3.2-1B-Instruct")
    assert missing.status_code == 404
    assert missing.json() == {
        "status": 404,
        "error": "base model Llama-3.2-1B-Instruct not found",
        "code": "object_not_found",
    }


# --- projects and datasets ------------------------------------------------------------------


def test_the_seeded_project_is_there_from_the_start_and_comes_back_after_a_delete(tmp_path: Any) -> None:
    """`ms-local` lets an Emissary manifest train offline with no setup (specs/pipelines/emissary/)."""
    seeded = {"id": "ms-local", "name": "local"}
    with serve_app(tmp_path / "platform") as live, emissary(live) as em:
        assert em.get("/v1/projects").json() == [seeded]
        assert em.get("/v1/projects/ms-local").json() == {**seeded, "datasets": [], "training_jobs": [],
                                                          "deployments": []}
        ds = upload(em, "ms-local")
        assert em.get("/v1/projects/ms-local/datasets").json()[0]["id"] == ds
        assert em.delete("/v1/projects/ms-local").status_code == 204
        assert em.get("/v1/projects").json() == []
    with serve_app(tmp_path / "platform") as live, emissary(live) as em:
        assert em.get("/v1/projects").json() == [seeded]  # seeded again at start, empty
        assert em.get("/v1/projects/ms-local/datasets").json() == []


def test_project_lifecycle_and_codes(em: httpx.Client) -> None:
    empty = em.post("/v1/projects", headers={**OCTET, "Content-Length": "0"})  # SDK: no request body
    assert empty.status_code == 201 and empty.json() == {"id": empty.json()["id"], "name": None}
    assert em.post("/v1/projects", json={}).status_code == 201
    pid = make_project(em, "poems")
    listed = em.get("/v1/projects", headers=OCTET)
    assert listed.status_code == 200 and isinstance(listed.json(), list)
    assert {"id": pid, "name": "poems"} in listed.json()
    detail = em.get(f"/v1/projects/{pid}", headers=OCTET).json()
    assert detail == {"id": pid, "name": "poems", "datasets": [], "training_jobs": [], "deployments": []}
    gone = em.delete(f"/v1/projects/{pid}", headers=OCTET)
    assert gone.status_code == 204 and gone.content == b""
    again = em.get(f"/v1/projects/{pid}")
    assert again.status_code == 404 and again.json()["code"] == "object_not_found"
    assert em.delete(f"/v1/projects/{pid}").status_code == 404
    bad = em.post("/v1/projects", content=b"[1]", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["status"] == 400 and "object" in bad.json()["error"]


def test_dataset_upload_list_get_download_delete(em: httpx.Client, live_platform: LivePlatform) -> None:
    pid = make_project(em)
    r = em.post(
        f"/v1/projects/{pid}/datasets", data={"name": "my_dataset"}, files={"file": ("../../etc/evil.jsonl", POEM)}
    )
    assert r.status_code == 201
    ds = r.json()
    assert set(ds) == {"id", "name", "created_at", "is_uploaded"}
    assert ds["name"] == "my_dataset" and ds["is_uploaded"] is True and isinstance(ds["created_at"], int)
    assert abs(ds["created_at"] - time.time()) < 60  # epoch seconds
    assert em.get(f"/v1/projects/{pid}/datasets").json() == [ds]
    detail = em.get(f"/v1/projects/{pid}/datasets/{ds['id']}").json()
    assert detail["upload_by"] and isinstance(detail["updated_at"], int)
    assert detail["dataset_download_url"].startswith(live_platform.url)
    got = em.get(detail["dataset_download_url"])
    assert got.status_code == 200 and got.content == POEM
    # Stored under a server-made name only.
    stored = list((live_platform.data_dir / "emissary" / "datasets").iterdir())
    assert [p.name for p in stored] == [ds["id"]]
    assert em.delete(f"/v1/projects/{pid}/datasets/{ds['id']}", headers=OCTET).status_code == 204
    assert em.get(f"/v1/projects/{pid}/datasets/{ds['id']}").status_code == 404
    assert not list((live_platform.data_dir / "emissary" / "datasets").iterdir())


def test_dataset_errors(shared_em: httpx.Client) -> None:
    em = shared_em
    pid = make_project(em)
    not_multipart = em.post(f"/v1/projects/{pid}/datasets", json={"name": "x"})
    assert not_multipart.status_code == 400 and "multipart" in not_multipart.json()["error"]
    unknown_project = em.post("/v1/projects/ms-nope/datasets", files={"file": ("a.txt", b"abc")})
    assert unknown_project.status_code == 404 and unknown_project.json()["code"] == "object_not_found"


# --- training jobs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"train_dataset_id": "DS"}, "base_model is required"),
        ({"base_model": "jobrunner-ngram"}, "train_dataset_id is required"),
        ({"base_model": "Llama-3.2-1B-Instruct", "train_dataset_id": "DS"}, "unknown base_model"),
        ({"base_model": "jobrunner-ngram", "train_dataset_id": "ds-missing"}, "not an uploaded dataset"),
        (
            {"base_model": "jobrunner-ngram", "train_dataset_id": "DS", "test_dataset_id": "ds-missing"},
            "test_dataset_id",
        ),
        (
            {"base_model": "jobrunner-ngram", "train_dataset_id": "DS", "train_test_split_ratio": 1.5},
            "train_test_split_ratio",
        ),
        ({"base_model": "jobrunner-ngram", "train_dataset_id": "DS", "parameters": {"order": 42}}, "parameters.order"),
        ({"base_model": "jobrunner-ngram", "train_dataset_id": "DS", "parameters": {"x": [1]}}, "parameters.x"),
        ({"base_model": "jobrunner-ngram", "train_dataset_id": "DS", "parameters": {"x": True}}, "parameters.x"),
    ],
)
def test_training_job_create_validation_is_400(shared_em: httpx.Client, body: dict[str, Any], message: str) -> None:
    em = shared_em
    pid = make_project(em)
    ds = upload(em, pid)
    body = {k: (ds if v == "DS" else v) for k, v in body.items()}
    r = em.post(f"/v1/projects/{pid}/training-jobs", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and message in r.json()["error"]


def test_training_runs_writes_checkpoints_and_reports_progress(em: httpx.Client) -> None:
    pid = make_project(em)
    ds = upload(em, pid)
    r = em.post(
        f"/v1/projects/{pid}/training-jobs",
        json={"base_model": "jobrunner-ngram", "train_dataset_id": ds, "train_test_split_ratio": 0.2,
              "name": "t1", "description": "d", "parameters": {"steps": 8, "checkpoint_every": 3, "step_seconds": 0.05},
              "unknown_field": "tolerated"},
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) == {"id", "name", "base_model", "status", "progress", "created_by", "created_at", "updated_at"}
    assert job["status"] == "Pending" and job["progress"] == 0 and job["name"] == "t1"
    path = f"/v1/projects/{pid}/training-jobs/{job['id']}"
    seen_progress: set[int] = set()
    deadline = time.monotonic() + 20
    while True:
        d = em.get(path, headers=OCTET).json()
        assert d["status"] in STATUSES
        seen_progress.add(d["progress"])
        if d["status"] == "Success" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert d["status"] == "Success", d
    assert d["progress"] == 100 and len(seen_progress) > 2  # it moved
    assert d["train_dataset"]["id"] == ds and d["test_dataset"] is None
    assert d["description"] == "d" and d["hyper_parameters"]["checkpoint_every"] == 3
    assert len(d["training_loss"]) == 7 and all(isinstance(p["loss"], float) for p in d["training_loss"])
    ck = em.get(path + "/checkpoints", headers=OCTET)
    assert ck.status_code == 200
    ckpts = ck.json()
    assert [c["checkpoint"] for c in ckpts] == [1, 2, 3]  # steps 3, 6 and the last one (8)
    for c in ckpts:
        agg = c["test_results"]["aggregated_test_result"]
        assert set(agg) == {"loss", "perplexity"} and all(isinstance(v, str) for v in agg.values())
        assert float(agg["perplexity"]) > 1 and isinstance(c["created_at"], int)
        weights = em.get(c["model_download_url"]).json()
        assert weights["order"] == 4 and weights["counts"]
        assert em.get(c["test_results"]["general_test_result"]).json()["checkpoint"] == c["checkpoint"]
    listed = em.get(f"/v1/projects/{pid}/training-jobs").json()
    assert isinstance(listed, list) and listed[0]["id"] == job["id"]
    # Cancel of a finished job changes nothing.
    assert em.post(path + "/cancel", headers=OCTET).status_code == 204
    assert em.get(path).json()["status"] == "Success"


def test_cancel_stops_a_running_training_within_a_second(em: httpx.Client) -> None:
    pid = make_project(em)
    ds = upload(em, pid)
    job = em.post(
        f"/v1/projects/{pid}/training-jobs",
        json={
            "base_model": "jobrunner-ngram",
            "train_dataset_id": ds,
            "parameters": {"steps": 100, "step_seconds": 0.5},
        },
    ).json()
    path = f"/v1/projects/{pid}/training-jobs/{job['id']}"
    wait_status(em, path, {"Running"})
    r = em.post(path + "/cancel", headers={**OCTET, "Content-Length": "0"})
    assert r.status_code == 204 and r.content == b""
    t0 = time.monotonic()
    d = wait_status(em, path, {"Cancelled"}, timeout=10.0)
    # Far below the 50 s the training would run, and still true on a busy machine.
    assert time.monotonic() - t0 < 10.0
    time.sleep(0.6)  # a killed worker sends nothing more: progress stays where it stopped
    assert em.get(path).json()["progress"] == d["progress"] < 100


def test_timeout_seconds_parameter_ends_in_timed_out(shared_em: httpx.Client) -> None:
    em = shared_em
    pid = make_project(em)
    ds = upload(em, pid)
    job = em.post(f"/v1/projects/{pid}/training-jobs",
                  json={"base_model": "jobrunner-ngram", "train_dataset_id": ds,
                        "parameters": {"steps": 100, "step_seconds": 0.5, "timeout_seconds": 0.5}}).json()
    d = wait_status(em, f"/v1/projects/{pid}/training-jobs/{job['id']}", {"TimedOut", "Success", "Failed"})
    assert d["status"] == "TimedOut" and "timeout_seconds" in d["error"]


def test_failed_training_says_why(shared_em: httpx.Client) -> None:
    em = shared_em
    pid = make_project(em)
    ds = upload(em, pid, data=b"\n\n")
    job = em.post(
        f"/v1/projects/{pid}/training-jobs", json={"base_model": "jobrunner-ngram", "train_dataset_id": ds}
    ).json()
    d = wait_status(em, f"/v1/projects/{pid}/training-jobs/{job['id']}", {"Failed", "Success"})
    assert d["status"] == "Failed" and "no text" in d["error"]


def test_delete_running_job_and_project_cascade(em: httpx.Client, live_platform: LivePlatform) -> None:
    pid = make_project(em)
    ds = upload(em, pid)
    slow = {"base_model": "jobrunner-ngram", "train_dataset_id": ds, "parameters": {"steps": 100, "step_seconds": 0.5}}
    a = em.post(f"/v1/projects/{pid}/training-jobs", json=slow).json()
    b = em.post(f"/v1/projects/{pid}/training-jobs", json=slow).json()
    wait_status(em, f"/v1/projects/{pid}/training-jobs/{a['id']}", {"Running"})
    r = em.delete(f"/v1/projects/{pid}/training-jobs/{a['id']}", headers=OCTET)
    assert r.status_code == 204 and r.content == b""
    assert em.get(f"/v1/projects/{pid}/training-jobs/{a['id']}").status_code == 404
    assert em.post(f"/v1/projects/{pid}/training-jobs/{a['id']}/cancel").status_code == 404
    assert em.get(f"/v1/projects/{pid}/training-jobs/{a['id']}/checkpoints").status_code == 404
    assert em.delete(f"/v1/projects/{pid}").status_code == 204
    assert em.get(f"/v1/projects/{pid}/training-jobs").status_code == 404
    service = live_platform.emissary
    assert service.store.get_training_job(None, b["id"]) is None
    assert not live_platform.platform.runner.holds(b["id"])


def test_running_jobs_fail_after_a_restart(tmp_path) -> None:
    data = tmp_path / "platform"
    with serve_app(data) as live, emissary(live) as em:
        pid = make_project(em)
        ds = upload(em, pid)
        job = em.post(
            f"/v1/projects/{pid}/training-jobs",
            json={
                "base_model": "jobrunner-ngram",
                "train_dataset_id": ds,
                "parameters": {"steps": 100, "step_seconds": 0.5},
            },
        ).json()
        wait_status(em, f"/v1/projects/{pid}/training-jobs/{job['id']}", {"Running"})
    with serve_app(data) as live, emissary(live) as em:
        d = em.get(f"/v1/projects/{pid}/training-jobs/{job['id']}").json()
        assert d["status"] == "Failed" and "stopped" in d["error"]
        assert em.get(f"/v1/projects/{pid}/datasets/{ds}").json()["is_uploaded"] is True


# --- deployments ----------------------------------------------------------------------------


def trained_job(em: httpx.Client) -> tuple[str, str]:
    pid = make_project(em)
    ds = upload(em, pid)
    job = em.post(
        f"/v1/projects/{pid}/training-jobs",
        json={
            "base_model": "jobrunner-ngram",
            "train_dataset_id": ds,
            "parameters": {"steps": 4, "checkpoint_every": 2},
        },
    ).json()
    assert (
        wait_status(em, f"/v1/projects/{pid}/training-jobs/{job['id']}", {"Success", "Failed"})["status"] == "Success"
    )
    return pid, job["id"]


def test_deployment_serves_completions_from_a_checkpoint(tmp_path) -> None:
    data = tmp_path / "platform"
    with serve_app(data) as live, emissary(live) as em:
        pid, job_id = trained_job(em)
        for body, message in [
            ({"checkpoint": 1}, "training_job_id is required"),
            ({"training_job_id": job_id}, "checkpoint is required"),
            ({"training_job_id": "tr-nope", "checkpoint": 1}, "not a training job"),
            ({"training_job_id": job_id, "checkpoint": 9}, "no checkpoint 9"),
            ({"training_job_id": job_id, "checkpoint": 1, "server_type": "gpu"}, "server_type"),
        ]:
            r = em.post(f"/v1/projects/{pid}/deployments", json=body)
            assert r.status_code == 400 and message in r.json()["error"], r.text
        r = em.post(f"/v1/projects/{pid}/deployments", json={"training_job_id": job_id, "checkpoint": 2, "name": "d1"})
        assert r.status_code == 201
        dep = r.json()
        assert set(dep) == {"id", "name", "status", "created_at"} and dep["status"] == "Pending"
        path = f"/v1/projects/{pid}/deployments/{dep['id']}"
        d = wait_status(em, path, {"Deployed", "Failed"})
        assert d["status"] == "Deployed" and d["training_id"] == job_id and d["checkpoint"] == 2
        assert d["base_model"] == "jobrunner-ngram" and isinstance(d["updated_at"], int)
        assert em.get(f"/v1/projects/{pid}").json()["deployments"] == [{**dep, "status": "Deployed"}]

        ask = {"prompt": "The moon", "max_new_tokens": 50, "seed": 3}
        a = em.post(path + "/completions", json=ask)
        assert a.status_code == 200 and a.json()["id"].startswith("completion-")
        assert len(a.json()["response"]) == 50
        assert em.post(path + "/completions", json=ask).json()["response"] == a.json()["response"]
        greedy = {"prompt": "At dawn", "max_new_tokens": 30, "do_sample": False}
        assert (
            em.post(path + "/completions", json=greedy).json()["response"]
            == em.post(path + "/completions", json=greedy).json()["response"]
        )
        chat = em.post(
            path + "/chat/completions", json={"messages": [{"role": "user", "content": "Small"}], "max_new_tokens": 20}
        )
        assert chat.status_code == 200 and len(chat.json()["response"]) == 20
        assert em.post(path + "/completions", json={"max_new_tokens": 5}).status_code == 400
        assert em.post(path + "/chat/completions", json={"messages": []}).status_code == 400
        emb = em.post(path + "/embeddings", json={"source_sentence": "The moon rises", "cosine": True,
                                                  "target_sentence": "The moon rises over the sea", "euclidean": True})
        assert emb.status_code == 200 and emb.json()["id"].startswith("embedding-")
        answer = emb.json()["response"]
        assert set(answer) == {"embeddings", "cosine_score", "euclidean_distance"}
        assert len(answer["embeddings"]["text1"]) == len(answer["embeddings"]["text2"]) > 1
        far = em.post(path + "/embeddings", json={"source_sentence": "The moon rises", "cosine": True,
                                                  "target_sentence": "zzzz qqqq xxxx"}).json()["response"]
        assert 0 < far["cosine_score"] < answer["cosine_score"] <= 1  # alike texts are closer
        assert em.post(path + "/embeddings", json={"source_sentence": "a"}).status_code == 400
        assert em.post(path + "/classification", json={}).status_code == 400
        first_text = a.json()["response"]
    # After a restart the deployment still serves the same text for the same seed.
    with serve_app(data) as live, emissary(live) as em:
        assert em.get(path).json()["status"] == "Deployed"
        assert em.post(path + "/completions", json=ask).json()["response"] == first_text
        assert em.post(path + "/cancel", headers=OCTET).status_code == 204
        assert em.get(path).json()["status"] == "Cancelled"
        stopped = em.post(path + "/completions", json=ask)
        assert stopped.status_code == 400 and "Cancelled" in stopped.json()["error"]
        assert em.delete(path, headers=OCTET).status_code == 204
        assert em.get(path).status_code == 404
        assert em.post(path + "/completions", json=ask).status_code == 404


# --- limits and faults answer in the Emissary error shape ------------------------------------


@pytest.mark.platform_options(max_body_bytes=4096)
def test_faults_and_size_limit_use_the_emissary_error_shape(live_platform: LivePlatform, em: httpx.Client) -> None:
    pid = make_project(em)
    big = em.post(f"/v1/projects/{pid}/datasets", files={"file": ("big.txt", b"x" * 10_000)})
    assert big.status_code == 413 and big.json()["status"] == 413 and "error" in big.json()
    live_platform.set_faults(fail_next=1, error_statuses=[503])
    r = em.get("/v1/projects")
    assert r.status_code == 503 and r.json() == {"status": 503, "error": r.json()["error"]}
    assert em.get("/v1/projects").status_code == 200
