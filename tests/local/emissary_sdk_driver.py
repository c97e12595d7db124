"""Drive a live local platform with the official, unmodified `emissary-client-sdk` 0.4.4.

Runs inside the SDK's own virtual environment (it pins older httpx and pydantic than jobrunner),
started by `test_official_emissary.py` as `python emissary_sdk_driver.py <server_url> <api_key>`.
Every call goes through the SDK's own response handling, so a wrong status code, content type,
enum value or field type makes the SDK itself raise. Prints one JSON object: the steps done and
what they returned; exits 1 with the failing step on error.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

import httpx
from emissary_client_sdk import EmissaryClient, models

STEPS: list[dict] = []


def step(name: str, value: object = None) -> None:
    STEPS.append({"step": name, "value": value})


def wait_for(get, done, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        obj = get()
        if done(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last: {obj!r}")
        time.sleep(0.1)


def main(server_url: str, api_key: str) -> None:
    # trust_env=False: never route loopback traffic through a proxy from the environment.
    client = EmissaryClient(
        api_key=api_key, server_url=server_url, client=httpx.Client(trust_env=False), timeout_ms=30000
    )

    # Auth: a wrong key on a list op is the typed 401.
    bad = EmissaryClient(api_key="wrong", server_url=server_url, client=httpx.Client(trust_env=False), timeout_ms=30000)
    try:
        bad.projects.list()
        raise AssertionError("a wrong key was accepted")
    except models.APIErrorUnauthorized as exc:
        step("projects.list with a wrong key -> APIErrorUnauthorized", exc.data.status)

    base = client.base_models.list()
    names = [m.name for m in base]
    assert "jobrunner-ngram" in names, names
    step("base_models.list", names)
    ngram = client.base_models.get(base_model_name="jobrunner-ngram")
    step("base_models.get", {"name": ngram.name, "type": ngram.type.value if ngram.type else None,
                             "parameter_template": ngram.parameter_template})
    try:
        client.base_models.get(base_model_name="no-such-model")
        raise AssertionError("unknown base model found")
    except models.APIErrorNotFound as exc:
        step("base_models.get unknown -> APIErrorNotFound", exc.data.code)

    empty = client.projects.create()  # no body at all
    step("projects.create (no body)", empty.id)
    project = client.projects.create(request={"name": "poems"})
    assert project.name == "poems"
    step("projects.create", {"id": project.id, "name": project.name})
    listed = client.projects.list()
    assert {p.id for p in listed} >= {empty.id, project.id}
    step("projects.list", len(listed))

    lines = [
        "The moon rises over the quiet sea, and the stars answer with a slow light.",
        "At dawn the birds begin again; at dusk the river keeps its counsel.",
        "Small models learn the shape of words from the letters that came before them.",
    ] * 15
    content = "".join(json.dumps({"text": t}) + "\n" for t in lines).encode()
    ds = client.datasets.create(
        project_id=project.id,
        request_body={
            "name": "poems-train",
            "file": {"file_name": "train.jsonl", "content": content, "content_type": "application/jsonl"},
        },
    )
    assert ds.is_uploaded is True and ds.name == "poems-train" and isinstance(ds.created_at, int)
    step("datasets.create", {"id": ds.id, "name": ds.name, "is_uploaded": ds.is_uploaded})
    test_ds = client.datasets.create(
        project_id=project.id,
        request_body={
            "name": "poems-test",
            "file": {"file_name": "test.txt", "content": b"The river rises at dawn over the quiet sea.\n"},
        },
    )
    step("datasets.create (plain text)", test_ds.id)
    assert {d.id for d in client.datasets.list(project_id=project.id)} == {ds.id, test_ds.id}
    detail = client.datasets.get(project_id=project.id, dataset_id=ds.id)
    assert detail.is_uploaded and detail.dataset_download_url
    step("datasets.get", {"dataset_download_url": detail.dataset_download_url, "upload_by": detail.upload_by})

    job = client.training_jobs.create(
        project_id=project.id,
        request_body={
            "base_model": "jobrunner-ngram",
            "train_dataset_id": ds.id,
            "test_dataset_id": test_ds.id,
            "name": "poems-ngram",
            "description": "a character model of a few lines",
            "parameters": {"order": 4, "steps": 6, "checkpoint_every": 2},
        },
    )
    assert job.status == models.Status.PENDING or job.status == models.Status.RUNNING, job.status
    step("training_jobs.create", {"id": job.id, "status": job.status.value, "progress": job.progress})
    done = wait_for(
        lambda: client.training_jobs.get(project_id=project.id, training_job_id=job.id),
        lambda j: j.status.value in ("Success", "Failed", "Cancelled", "TimedOut"),
    )
    assert done.status.value == "Success", done
    assert done.progress == 100 and done.train_dataset.id == ds.id and done.test_dataset.id == test_ds.id
    assert done.training_loss, done
    step("training_jobs.get (finished)", {"status": done.status.value, "progress": done.progress,
                                          "hyper_parameters": done.hyper_parameters,
                                          "training_loss_points": len(done.training_loss)})
    ckpts = client.training_jobs.list_checkpoints(project_id=project.id, training_job_id=job.id)
    assert [c.checkpoint for c in ckpts] == [1, 2, 3], ckpts
    for c in ckpts:
        agg = c.test_results.aggregated_test_result
        assert set(agg) >= {"loss", "perplexity"} and float(agg["perplexity"]) > 1, agg
    step("training_jobs.list_checkpoints", [
        {"checkpoint": c.checkpoint, "aggregated_test_result": c.test_results.aggregated_test_result} for c in ckpts
    ])

    slow = client.training_jobs.create(
        project_id=project.id,
        request_body={"base_model": "jobrunner-ngram", "train_dataset_id": ds.id, "train_test_split_ratio": 0.2,
                      "parameters": {"steps": 50, "step_seconds": 0.2}},
    )
    wait_for(lambda: client.training_jobs.get(project_id=project.id, training_job_id=slow.id),
             lambda j: j.status.value == "Running")
    assert client.training_jobs.cancel(project_id=project.id, training_job_id=slow.id) is None
    t0 = time.monotonic()
    cancelled = wait_for(lambda: client.training_jobs.get(project_id=project.id, training_job_id=slow.id),
                         lambda j: j.status.value == "Cancelled", timeout=15)  # it would run 10 s more
    step(
        "training_jobs.cancel",
        {
            "status": cancelled.status.value,
            "seconds_to_cancelled": round(time.monotonic() - t0, 3),
            "progress": cancelled.progress,
        },
    )
    summaries = client.training_jobs.list(project_id=project.id)
    assert isinstance(summaries, list) and {j.id for j in summaries} == {job.id, slow.id}
    step("training_jobs.list", [(j.id, j.status.value) for j in summaries])

    assert client.training_jobs.delete(project_id=project.id, training_job_id=slow.id) is None
    try:
        client.training_jobs.get(project_id=project.id, training_job_id=slow.id)
        raise AssertionError("a deleted job is still there")
    except models.APIErrorNotFound as exc:
        step("training_jobs.delete then get -> APIErrorNotFound", exc.data.code)

    pd = client.projects.get(project_id=project.id)
    assert [j.id for j in pd.training_jobs] == [job.id] and len(pd.datasets) == 2
    step("projects.get", {"datasets": len(pd.datasets), "training_jobs": len(pd.training_jobs),
                          "deployments": len(pd.deployments or [])})

    dep = client.deployments.create(
        project_id=project.id,
        request_body={"training_job_id": job.id, "checkpoint": 3, "name": "poems-live", "server_type": "on-demand"},
    )
    assert dep.status.value in ("Pending", "Deploying", "Deployed"), dep
    step("deployments.create", {"id": dep.id, "status": dep.status.value})
    live = wait_for(lambda: client.deployments.get(project_id=project.id, deployment_id=dep.id),
                    lambda d: d.status.value in ("Deployed", "Failed"))
    assert live.status.value == "Deployed" and live.training_id == job.id and live.checkpoint == 3
    step(
        "deployments.get", {"status": live.status.value, "training_id": live.training_id, "base_model": live.base_model}
    )
    comp = client.deployments.completions.create(
        project_id=project.id,
        deployment_id=dep.id,
        request_body={"prompt": "The moon", "max_new_tokens": 40, "temperature": 0.7},
    )
    assert isinstance(comp.response, str) and len(comp.response) == 40, comp
    step("deployments.completions.create", comp.response)
    chat = client.deployments.chat.completions.create(
        project_id=project.id, deployment_id=dep.id,
        request_body={"messages": [{"role": "user", "content": "At dawn"}], "max_new_tokens": 30})
    assert isinstance(chat.response, str) and len(chat.response) == 30
    step("deployments.chat.completions.create", chat.response)
    emb = client.deployments.embeddings.create(
        project_id=project.id, deployment_id=dep.id,
        request_body={"source_sentence": "The moon", "target_sentence": "The sea", "cosine": True})
    assert emb.id.startswith("embedding-") and emb.response is not None, emb
    assert len(emb.response.embeddings.text1) == len(emb.response.embeddings.text2) > 1
    assert 0 < emb.response.cosine_score <= 1 and emb.response.manhattan_distance is None
    step("deployments.embeddings.create", {"cosine_score": emb.response.cosine_score})
    try:
        client.deployments.classification.create(project_id=project.id, deployment_id=dep.id,
                                                 request_body={"source_sentence": "a"})
        raise AssertionError("classification from a completion model")
    except models.APIErrorInvalidInput as exc:
        step("deployments.classification.create -> APIErrorInvalidInput", exc.data.error)
    assert [d.id for d in client.deployments.list(project_id=project.id)] == [dep.id]
    assert client.deployments.cancel(project_id=project.id, deployment_id=dep.id) is None
    assert client.deployments.get(project_id=project.id, deployment_id=dep.id).status.value == "Cancelled"
    assert client.deployments.delete(project_id=project.id, deployment_id=dep.id) is None
    step("deployments.cancel and delete", dep.id)

    assert client.datasets.delete(project_id=project.id, dataset_id=test_ds.id) is None
    step("datasets.delete", test_ds.id)
    assert client.projects.delete(project_id=empty.id) is None
    try:
        client.projects.get(project_id=empty.id)
        raise AssertionError("a deleted project is still there")
    except models.APIErrorNotFound:
        step("projects.delete then get -> APIErrorNotFound", empty.id)

    try:
        client.training_jobs.create(
            project_id=project.id, request_body={"base_model": "jobrunner-ngram", "train_dataset_id": "ds-missing"}
        )
        raise AssertionError("a job on a missing dataset was created")
    except models.APIErrorInvalidInput as exc:
        step("training_jobs.create with an unknown dataset -> APIErrorInvalidInput", exc.data.error)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except BaseException as exc:  # report everything, including the SDK's own validation errors
        print(json.dumps({"ok": False, "steps": STEPS, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps({"ok": True, "steps": STEPS}))
