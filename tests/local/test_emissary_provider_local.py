"""jobrunner's own Emissary provider against the local platform's Emissary wire (real HTTP).

What a user does with `EMISSARY_SERVER_URL=<local url>` and `EMISSARY_CLIENT_API_KEY=<token>`:
the provider and the platform must agree on every code and shape.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jobrunner.errors import NotFoundError
from jobrunner.providers.base import CANCELED, FAILED, SUCCEEDED, CreateRequest
from jobrunner.providers.emissary import EmissaryProvider
from jobrunner.providers.registry import get_provider
from jobrunner.workspace import WorkspaceConfig
from tests.platform_fixture import LivePlatform


async def _poll(provider, job_id: str, project_id: str, done: set[str], timeout: float = 20):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await provider.get("training", job_id, project_id=project_id)
        if job.status in done or loop.time() > deadline:
            return job
        await asyncio.sleep(0.05)


def test_emissary_provider_trains_lists_cancels_on_the_local_platform(
    live_platform: LivePlatform, tmp_path: Path
) -> None:
    data = tmp_path / "poems.jsonl"
    data.write_text("".join(json.dumps({"text": f"the moon over the sea, line {i}"}) + "\n" for i in range(60)))
    env = {"EMISSARY_SERVER_URL": live_platform.url, "EMISSARY_CLIENT_API_KEY": live_platform.token}

    async def scenario() -> None:
        provider = get_provider("emissary", WorkspaceConfig(), tmp_path, env=env)
        assert isinstance(provider, EmissaryProvider)
        try:
            project = await provider.create_project("poems")
            pid = project["id"]
            assert pid in {p["id"] for p in await provider.list_projects()}
            ds = await provider.upload(str(data), project_id=pid)
            body = {"base_model": "jobrunner-ngram", "train_dataset_id": ds, "train_test_split_ratio": 0.2,
                    "parameters": {"steps": 4, "checkpoint_every": 2}}
            job = await provider.create(CreateRequest(job_kind="training", body=body, project_id=pid))
            done = await _poll(provider, job.id, pid, {SUCCEEDED, CANCELED, FAILED})
            assert done.status == SUCCEEDED, done
            ckpts = await provider.checkpoints(job.id, project_id=pid)
            assert [c["checkpoint"] for c in ckpts] == [1, 2]
            assert "loss=" in await provider.logs("training", job.id, project_id=pid)

            slow_body = {**body, "parameters": {"steps": 100, "step_seconds": 0.5}}
            slow = await provider.create(CreateRequest(job_kind="training", project_id=pid, body=slow_body))
            await provider.cancel("training", slow.id, project_id=pid)
            # 10 s: far below the 50 s the training would run, and still true on a busy machine.
            assert (await _poll(provider, slow.id, pid, {CANCELED}, timeout=10)).status == CANCELED
            listed = [j.id async for j in provider.list("training", project_id=pid)]
            assert set(listed) == {job.id, slow.id}
            await provider.delete("training", slow.id, project_id=pid)
            with pytest.raises(NotFoundError):
                await provider.get("training", slow.id, project_id=pid)
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_emissary_provider_deploys_a_checkpoint_and_runs_inference_on_the_local_platform(
        live_platform: LivePlatform, tmp_path: Path) -> None:
    """The deployment client (create, get, list, inference, delete) against the platform's Emissary wire."""
    data = tmp_path / "poems.jsonl"
    data.write_text("".join(json.dumps({"text": f"the moon over the sea, line {i}"}) + "\n" for i in range(60)))
    env = {"EMISSARY_SERVER_URL": live_platform.url, "EMISSARY_CLIENT_API_KEY": live_platform.token}

    async def scenario() -> None:
        provider = get_provider("emissary", WorkspaceConfig(), tmp_path, env=env)
        assert isinstance(provider, EmissaryProvider)
        try:
            pid = (await provider.create_project("deploy"))["id"]
            ds = await provider.upload(str(data), project_id=pid)
            body = {"base_model": "jobrunner-ngram", "train_dataset_id": ds, "parameters": {"steps": 2}}
            job = await provider.create(CreateRequest(job_kind="training", body=body, project_id=pid))
            assert (await _poll(provider, job.id, pid, {SUCCEEDED, CANCELED, FAILED})).status == SUCCEEDED
            made = await provider.create_deployment(
                {"training_job_id": job.id, "checkpoint": 1, "name": "poems-api", "server_type": "on-demand"},
                project_id=pid)
            assert made.name == "poems-api"
            assert made.url == f"{live_platform.url}/v1/projects/{pid}/deployments/{made.id}"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            dep = await provider.get_deployment(made.id, project_id=pid)
            while not dep.ready and dep.status not in (FAILED, CANCELED) and loop.time() < deadline:
                await asyncio.sleep(0.05)
                dep = await provider.get_deployment(made.id, project_id=pid)
            assert dep.ready and dep.raw_status == "Deployed"
            assert dep.settings == {"project_id": pid, "training_job_id": job.id, "checkpoint": 1}
            assert [d.id for d in await provider.list_deployments(project_id=pid)] == [made.id]
            row = CreateRequest(job_kind="prediction", project_id=pid, deployment=made.id, endpoint="completions",
                                body={"prompt": "the moon", "max_new_tokens": 12, "seed": 1})
            answer = await provider.create(row)
            assert answer.status == SUCCEEDED and isinstance(answer.output, str) and answer.output
            chat = await provider.infer(made.id, "chat.completions",
                                        {"messages": [{"role": "user", "content": "the sea"}], "max_new_tokens": 8},
                                        project_id=pid)
            assert isinstance(chat["response"], str)
            await provider.delete_deployment(made.id, project_id=pid)
            await provider.delete_deployment(made.id, project_id=pid)  # already gone: done
            with pytest.raises(NotFoundError):
                await provider.get_deployment(made.id, project_id=pid)
        finally:
            await provider.aclose()

    asyncio.run(scenario())
