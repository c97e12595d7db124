"""The Replicate-wire provider against the real local platform on an ephemeral loopback port.

This is the `local` provider as users get it (providers.local.url + the platform token), talking
real HTTP to the embedded platform: built-in models run, lists paginate, trainings produce
versions, cancel works, and a bulk refresh of many jobs costs a few list pages.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import AuthError, InvalidRequestError, NotFoundError
from jobrunner.providers.base import TERMINAL, CreateRequest
from jobrunner.providers.local import LocalProvider
from jobrunner.providers.registry import get_provider
from jobrunner.workspace import WorkspaceConfig
from tests.platform_fixture import serve_platform

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"
TOKEN = "jrl_provider-test-token-0123456789"


@pytest.fixture(scope="module")
def platform_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_platform(tmp_path_factory.mktemp("platform"), TOKEN, min_cancel_after=0.2) as live:
        yield live.url


def local_provider(url: str, root: Path, token: str = TOKEN) -> Any:
    config = WorkspaceConfig(providers={"local": {"url": url}})
    return get_provider("local", config, root, env={"JOBRUNNER_LOCAL_TOKEN": token})


async def wait_all(provider: Any, job_kind: str, ids: set[str], oldest: datetime, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = await provider.refresh_many(job_kind, ids, oldest)
        if all(j.terminal for j in got.values()) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


def test_batch_of_echo_predictions_and_bulk_refresh(platform_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        provider = local_provider(platform_url, tmp_path)
        assert isinstance(provider, LocalProvider) and provider.name == "local"
        try:
            schema = await provider.get_version_schema("jobrunner/echo", ECHO)
            assert schema is not None and schema["title"] == "Input"
            start = datetime.now(UTC)
            reqs = [
                CreateRequest(job_kind="prediction", body={"input": {"i": i}}, model="jobrunner/echo", version=ECHO)
                for i in range(150)
            ]
            jobs = await asyncio.gather(*(provider.create(r) for r in reqs))
            ids = {j.id for j in jobs}
            assert len(ids) == 150
            before = provider.http.stats["requests"]
            done = await wait_all(provider, "prediction", ids, start)
            assert {j.status for j in done.values()} == {"succeeded"}
            assert sorted(j.output["i"] for j in done.values()) == list(range(150))
            # one final refresh of 150 terminal jobs: two list pages, no per-job GET
            again_before = provider.http.stats["requests"]
            again = await provider.refresh_many("prediction", ids, start)
            assert len(again) == 150 and provider.http.stats["requests"] - again_before <= 3
            assert provider.http.stats["requests"] > before
            listed = [j async for j in provider.list("prediction", since=start - timedelta(seconds=5))]
            assert ids <= {j.id for j in listed}
            # newest first
            stamps = [j.created_at for j in listed]
            assert stamps == sorted(stamps, reverse=True)
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_model_training_and_prediction_with_the_new_version(platform_url: str, tmp_path: Path) -> None:
    text = tmp_path / "poems.txt"
    text.write_text("the moon is bright tonight and the sea is calm\n" * 40)

    async def scenario() -> None:
        provider = local_provider(platform_url, tmp_path)
        try:
            assert not await provider.model_exists("me", "poems")
            await provider.create_model("me", "poems", "private", "cpu", "Poems")
            assert (await provider.get_model("me", "poems"))["name"] == "poems"
            url = await provider.upload(str(text))
            assert url.startswith(platform_url)
            training = await provider.create(
                CreateRequest(
                    job_kind="training",
                    body={"input": {"train_data": url, "order": 3}},
                    model="jobrunner/ngram",
                    version=NGRAM,
                    destination="me/poems",
                )
            )
            done = (await wait_all(provider, "training", {training.id}, datetime.now(UTC)))[training.id]
            assert done.status == "succeeded", done
            new_version = done.extra["trained_version"]
            assert done.extra["destination"] == "me/poems" and len(new_version) == 64
            schema = await provider.get_version_schema("me/poems", new_version)
            assert "prompt" in schema["properties"]
            pred = await provider.create(
                CreateRequest(
                    job_kind="prediction",
                    body={"input": {"prompt": "the moon", "max_tokens": 20, "seed": 1}},
                    version=f"me/poems:{new_version}",
                )
            )
            out = (await wait_all(provider, "prediction", {pred.id}, datetime.now(UTC)))[pred.id]
            assert out.status == "succeeded" and isinstance(out.output, str)
            # lifecycle.on_remove: delete_version, the way apply sends it (202, then 404 = done).
            assert await provider.delete_version(None, f"me/poems:{new_version}") is True
            assert await provider.delete_version("me/poems", new_version) is False
            with pytest.raises(InvalidRequestError):
                await provider.create(CreateRequest(job_kind="prediction", body={"input": {}},
                                                    version=f"me/poems:{new_version}"))
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_cancel_errors_and_gone(platform_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        provider = local_provider(platform_url, tmp_path)
        try:
            job = await provider.create(
                CreateRequest(
                    job_kind="prediction",
                    body={"input": {"seconds": 30, "log_lines": 30}},
                    version=SLEEP,
                    cancel_after="1h",
                )
            )
            await provider.cancel("prediction", job.id)
            done = (await wait_all(provider, "prediction", {job.id}, datetime.now(UTC), timeout=10))[job.id]
            assert done.status in ("canceled", "aborted") and done.status in TERMINAL
            with pytest.raises(InvalidRequestError) as info:
                await provider.create(
                    CreateRequest(job_kind="prediction", body={"input": {"seconds": "soon"}}, version=SLEEP)
                )
            assert info.value.status == 422 and info.value.detail
            with pytest.raises(NotFoundError):
                await provider.get("prediction", "doesnotexist00000000000000")
            got = await provider.refresh_many("prediction", {job.id, "doesnotexist00000000000000"}, datetime.now(UTC))
            assert got["doesnotexist00000000000000"].status == "gone" and got[job.id].terminal
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_wrong_token_is_an_auth_error_without_the_token(platform_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        provider = local_provider(platform_url, tmp_path, token="jrl_wrong-token-abcdefghijkl")
        try:
            with pytest.raises(AuthError) as info:
                await provider.get("prediction", "x")
            assert "jrl_wrong-token-abcdefghijkl" not in str(info.value) + (info.value.hint or "") + (
                info.value.detail or ""
            )
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_local_provider_starts_nothing_until_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan with only terminal jobs must not boot the platform: resolution happens on first request."""
    import jobrunner.local.autostart as autostart

    calls: list[Path] = []

    def fake_ensure(root: Path, **kw: Any) -> Any:
        calls.append(root)
        raise RuntimeError("would start the platform")

    monkeypatch.setattr(autostart, "ensure_platform", fake_ensure)
    provider = get_provider("local", WorkspaceConfig(), tmp_path, env={})
    assert calls == []

    async def use() -> None:
        try:
            await provider.get("prediction", "x")
        finally:
            await provider.aclose()

    with pytest.raises(RuntimeError):
        asyncio.run(use())
    assert calls == [tmp_path]


def test_a_dropped_create_is_ambiguous_and_found_by_listing(platform_url: str, tmp_path: Path) -> None:
    """The platform commits the job, then drops the connection: jobrunner must not send it again."""
    import httpx

    from jobrunner.errors import TransportError

    with httpx.Client(base_url=platform_url, headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
        admin.post("/_admin/faults", json={"drop_next_creates": 1}).raise_for_status()

    async def scenario() -> None:
        provider = local_provider(platform_url, tmp_path)
        try:
            since = datetime.now(UTC) - timedelta(seconds=2)
            marker = {"marker": f"dropped-{time.time_ns()}"}
            with pytest.raises(TransportError) as info:
                await provider.create(CreateRequest(job_kind="prediction", body={"input": marker}, version=ECHO))
            assert info.value.ambiguous is True
            assert provider.http.stats["requests.create"] == 1  # not re-sent
            matches = [j async for j in provider.list("prediction", since=since) if j.input == marker]
            assert len(matches) == 1  # it was created exactly once, and can be adopted
        finally:
            await provider.aclose()

    try:
        asyncio.run(scenario())
    finally:
        with httpx.Client(base_url=platform_url, headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
            admin.post("/_admin/faults", json={"reset": True}).raise_for_status()
