"""Prediction creates ask Replicate to hold the answer until done (`Prefer: wait=n`) while that pays."""
from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
import respx

from jobrunner.errors import ConfigError
from jobrunner.providers.base import CreateRequest
from jobrunner.providers.registry import get_provider
from jobrunner.providers.replicate import ReplicateProvider
from jobrunner.providers.sync_create import MISSES_TO_STOP, PROBE_EVERY, SyncCreatePolicy
from jobrunner.workspace import WorkspaceConfig

from .conftest import REPLICATE, TOKEN, replicate_provider, run
from .test_replicate import CREATED, TRAINING_CREATED, V1

# The create answer of Replicate's sync mode when the prediction finished in time (api.md 3.1).
FINISHED = {**copy.deepcopy(CREATED), "status": "succeeded", "output": ["a corgi"],
            "completed_at": "2023-08-16T18:57:09.1Z", "started_at": "2023-08-16T18:57:08.5Z"}
PREDICTION = CreateRequest(job_kind="prediction", body={"input": {"prompt": "a corgi"}}, version=V1)


def _creates(answers: list[dict], n: int, fake_time, **kw) -> tuple[list[httpx.Request], list, object]:
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(side_effect=[httpx.Response(201, json=a) for a in answers])
        provider = replicate_provider(fake_time, **kw)

        async def main() -> list:
            try:
                return [await provider.create(PREDICTION) for _ in range(n)]
            finally:
                await provider.aclose()

        jobs = run(main())
    return [c.request for c in route.calls], jobs, provider


def test_finished_answers_keep_the_wait_and_carry_the_output(fake_time):
    sent, jobs, _ = _creates([FINISHED] * 5, 5, fake_time)
    assert [r.headers.get("Prefer") for r in sent] == ["wait=1"] * 5
    assert all(j.status == "succeeded" and j.output == ["a corgi"] for j in jobs)


def test_unfinished_answers_turn_the_wait_off_then_probe_again(fake_time):
    n = MISSES_TO_STOP + PROBE_EVERY + 2
    answers = [CREATED] * (MISSES_TO_STOP + PROBE_EVERY) + [FINISHED, FINISHED]
    sent, jobs, provider = _creates(answers, n, fake_time)
    prefer = [r.headers.get("Prefer") for r in sent]
    assert prefer[:MISSES_TO_STOP] == ["wait=1"] * MISSES_TO_STOP
    # Off after MISSES_TO_STOP unfinished answers; one create in PROBE_EVERY asks again.
    assert prefer[MISSES_TO_STOP:MISSES_TO_STOP + PROBE_EVERY - 1] == [None] * (PROBE_EVERY - 1)
    assert prefer[MISSES_TO_STOP + PROBE_EVERY - 1] == "wait=1"
    # That probe came back unfinished too (still the CREATED answer), so the next ones go without.
    assert prefer[MISSES_TO_STOP + PROBE_EVERY] is None
    assert jobs[0].status == "pending"


def test_a_finished_probe_turns_the_wait_back_on():
    policy = SyncCreatePolicy()
    for _ in range(MISSES_TO_STOP):
        assert policy.header() == "wait=1"
        policy.observe(False)
    headers = [policy.header() for _ in range(PROBE_EVERY)]
    assert headers.count("wait=1") == 1 and headers[-1] == "wait=1"
    policy.observe(True)
    assert policy.active and policy.header() == "wait=1"


def test_trainings_are_never_held(fake_time):
    req = CreateRequest(job_kind="training", body={"input": {}}, model="stability-ai/sdxl", version=V1,
                        destination="me/corgi")
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post(f"/v1/models/stability-ai/sdxl/versions/{V1}/trainings").mock(
            return_value=httpx.Response(201, json=TRAINING_CREATED))
        provider = replicate_provider(fake_time)

        async def main() -> None:
            try:
                await provider.create(req)
            finally:
                await provider.aclose()

        run(main())
    assert "Prefer" not in route.calls.last.request.headers


def test_cancel_after_and_prefer_travel_together(fake_time):
    req = CreateRequest(job_kind="prediction", body={"input": {}}, version=V1, cancel_after="2h")
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.post("/v1/predictions").mock(return_value=httpx.Response(201, json=FINISHED))
        provider = replicate_provider(fake_time)

        async def main() -> None:
            try:
                await provider.create(req)
            finally:
                await provider.aclose()

        run(main())
    headers = route.calls.last.request.headers
    assert headers["Prefer"] == "wait=1" and headers["Cancel-After"] == "2h"


@pytest.mark.parametrize("value, expected", [(None, 1), (True, 1), (5, 5), (60, 60), (False, None), (0, None)])
def test_config_values(value, expected):
    assert SyncCreatePolicy.from_config(value, "replicate").wait_seconds == expected


@pytest.mark.parametrize("value", [61, -1, 1.5, "1", [1]])
def test_bad_config_values_are_config_errors(value):
    with pytest.raises(ConfigError, match=r"providers\.replicate\.sync_wait"):
        SyncCreatePolicy.from_config(value, "replicate")


def test_registry_reads_sync_wait_from_jobrunner_yaml(tmp_path: Path):
    env = {"REPLICATE_API_TOKEN": TOKEN}
    off = get_provider("replicate", WorkspaceConfig(providers={"replicate": {"sync_wait": False}}), tmp_path, env=env)
    five = get_provider("local", WorkspaceConfig(providers={"local": {"sync_wait": 5}}), tmp_path, env=env)
    default = get_provider("replicate", WorkspaceConfig(), tmp_path, env=env)
    # The local platform's provider is Replicate's client pointed at it (LocalProvider subclasses it).
    assert isinstance(off, ReplicateProvider) and isinstance(five, ReplicateProvider)
    assert isinstance(default, ReplicateProvider)
    assert off.sync_create.header() is None
    assert five.sync_create.header() == "wait=5"
    assert default.sync_create.header() == "wait=1"
