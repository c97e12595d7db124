"""A provider that refuses the credential (401) or the account (402) during apply is asked once.

The first refused create stops every further request to that provider in the run: its other jobs
are not attempted and are reported once as a count, other providers' jobs still run and succeed,
apply exits 1, and state holds no remote id and no pending intent for the refused provider.

Replicate is played by respx on a loopback address (`127.0.0.1:9`); the `local` provider is the
real embedded platform on its ephemeral loopback port, passed through untouched.
"""
from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.helpers.cli import run_cli
from tests.platform_fixture import LivePlatform as Platform

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "providers" / "fixtures" / "replicate"
P401 = json.loads((FIXTURES / "error_401_unauthenticated.json").read_text())
P402 = {"title": "Payment required", "detail": "You have insufficient credit to run this model.", "status": 402}
ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
TOKEN = "r8_AUTHSTOP_SENTINEL_0123456789"
ITEMS = 30


def _batch(name: str, provider: str, version: str, n: int) -> str:
    rows = "\n".join(f"    - {{key: k{i}, text: t{i}}}" for i in range(n))
    return (f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: {provider}\n  version: {version}\n  inputs:\n{rows}\n")


@pytest.fixture
def mixed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with a 30-item Replicate batch and a 3-item batch on the local platform."""
    (workspace / "remote.yaml").write_text(_batch("remote", "replicate", VERSION, ITEMS))
    (workspace / "home.yaml").write_text(_batch("home", "local", ECHO, 3))
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9/v1")
    return workspace


class RefusingReplicate:
    """Answers every create with `answer` and records every request it receives."""

    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.calls: list[str] = []

    @property
    def creates(self) -> int:
        return sum(1 for c in self.calls if c == "POST /v1/predictions")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(self.answer.status_code, json=json.loads(self.answer.content),
                                  headers={"content-type": "application/problem+json"})
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": []})
        return httpx.Response(404, json={"title": "Not found", "detail": "Not found.", "status": 404})


def _apply(fake: RefusingReplicate, platform: Platform) -> Any:
    port = httpx.URL(platform.url).port
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=port).pass_through()
        mock.route(host="127.0.0.1", port=9).mock(side_effect=fake)
        r = run_cli("apply", "--auto-approve", "--parallelism", "10")
    assert "Traceback" not in r.output, r.output
    assert TOKEN not in r.output
    return r


def _state(root: Path) -> dict[str, Any]:
    return json.loads((root / ".jobrunner" / "state.json").read_text())["addresses"]


@pytest.mark.parametrize("answer,says,hint", [
    (httpx.Response(401, json=P401), "You did not pass a valid authentication token", "REPLICATE_API_TOKEN"),
    (httpx.Response(402, json=P402), "insufficient credit", "HTTP 402"),
], ids=["401", "402"])
def test_first_refusal_stops_the_provider_and_others_carry_on(answer: httpx.Response, says: str, hint: str,
                                                              mixed: Path, platform: Platform) -> None:
    fake = RefusingReplicate(answer)
    r = _apply(fake, platform)
    assert r.code == 1, r.output
    assert fake.creates == 1, fake.calls

    # one error block naming the provider, its detail and the hint; not a line per address
    assert r.output.count(says) <= 2, r.output  # the live progress line and the closing block
    assert r.stderr.count("provider replicate refused this run") == 1, r.output
    assert hint in r.stderr, r.output
    assert f"not attempted: {ITEMS - 1} job(s) of replicate" in r.stderr, r.output
    run_lines = r.stdout.split("\nPlan:", 1)[1].splitlines() + r.stderr.splitlines()  # after the plan itself
    assert sum(1 for line in run_lines if "PredictionBatch/remote[" in line) == 2, r.output
    assert f"{ITEMS - 1} not attempted" in r.stdout, r.output

    # the other provider's jobs ran to success
    state = _state(mixed)
    for i in range(3):
        assert state[f"PredictionBatch/home[k{i}]"]["status"] == "succeeded", state

    # state unharmed: nothing recorded or pending for the refused provider
    for address, st in state.items():
        if address.startswith("PredictionBatch/remote["):
            assert st.get("remote_id") is None, (address, st)
            assert st.get("intent") is None, (address, st)


def test_a_fixed_credential_afterwards_creates_every_job_once(mixed: Path, platform: Platform) -> None:
    r = _apply(RefusingReplicate(httpx.Response(401, json=P401)), platform)
    assert r.code == 1, r.output
    from datetime import datetime

    from jobrunner.local.clock import rfc3339

    prediction = json.loads((FIXTURES / "prediction_get_succeeded.json").read_text())
    made: list[dict[str, Any]] = []

    def healthy(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            job = prediction | {"id": f"p{len(made)}", "created_at": rfc3339(datetime.now(UTC)),
                                "input": json.loads(request.content)["input"]}
            made.append(job)
            return httpx.Response(201, json=job)
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": made})
        pid = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=next(j for j in made if j["id"] == pid))

    port = httpx.URL(platform.url).port
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=port).pass_through()
        mock.route(host="127.0.0.1", port=9).mock(side_effect=healthy)
        r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    assert len(made) == ITEMS


def test_credit_running_out_mid_batch_keeps_what_ran_and_stops_the_rest(mixed: Path, platform: Platform) -> None:
    """The first 5 creates are accepted, then the account runs out of credit (402)."""
    from datetime import datetime

    from jobrunner.local.clock import rfc3339

    prediction = json.loads((FIXTURES / "prediction_get_succeeded.json").read_text())
    made: list[dict[str, Any]] = []
    refused = 0

    def running_out(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        if request.method == "POST":
            if len(made) >= 5:
                refused += 1
                return httpx.Response(402, json=P402, headers={"content-type": "application/problem+json"})
            job = prediction | {"id": f"p{len(made)}", "created_at": rfc3339(datetime.now(UTC)),
                                "input": json.loads(request.content)["input"]}
            made.append(job)
            return httpx.Response(201, json=job)
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": made})
        pid = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=next(j for j in made if j["id"] == pid))

    port = httpx.URL(platform.url).port
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=port).pass_through()
        mock.route(host="127.0.0.1", port=9).mock(side_effect=running_out)
        r = run_cli("apply", "--auto-approve", "--parallelism", "4")
    assert r.code == 1, r.output
    assert 1 <= refused <= 4, refused  # at most the creates already in flight when credit ran out
    assert r.stderr.count("provider replicate refused this run") == 1, r.output
    assert r.output.count("insufficient credit") <= 2, r.output
    state = _state(mixed)
    remote = {a: s for a, s in state.items() if a.startswith("PredictionBatch/remote[")}
    assert sorted(s["remote_id"] for s in remote.values() if s.get("remote_id")) == sorted(j["id"] for j in made)
    assert remote and all(s.get("intent") is None for s in remote.values()), remote
    not_attempted = ITEMS - len(made) - refused
    assert f"not attempted: {not_attempted} job(s) of replicate" in r.stderr, r.output
