"""Shared helpers for the provider tests: fixtures on disk, fake time, providers wired to respx."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jobrunner.providers.emissary import EmissaryProvider
from jobrunner.providers.http import HttpClient, RetryPolicy
from jobrunner.providers.ratelimit import REPLICATE_LIMITS, UNLIMITED, RateLimiter, RateLimits
from jobrunner.providers.replicate import ReplicateProvider

FIXTURES = Path(__file__).parent / "fixtures"
REPLICATE = "https://api.replicate.com"
EMISSARY = "https://api.withemissary.com"
TOKEN = "r8_TESTTOKENabcdefghijklmnopqrstuv"
EMISSARY_KEY = "em_TESTKEY_0123456789abcdef"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class FakeTime:
    """A clock that only moves when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def replicate_provider(
    fake: FakeTime, *, limits: RateLimits | None = None, max_attempts: int = 4, **kw: Any
) -> ReplicateProvider:
    limiter = RateLimiter(
        limits or RateLimits(*[REPLICATE_LIMITS["create"], REPLICATE_LIMITS["other"]]),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    http = HttpClient(
        "replicate",
        REPLICATE,
        token=TOKEN,
        credential_var="REPLICATE_API_TOKEN",
        limiter=limiter,
        policy=RetryPolicy(max_attempts=max_attempts),
        sleep=fake.sleep,
    )
    return ReplicateProvider(http, **kw)


def emissary_provider(fake: FakeTime, *, max_attempts: int = 4) -> EmissaryProvider:
    limiter = RateLimiter(RateLimits(UNLIMITED["create"], UNLIMITED["other"]), clock=fake.clock, sleep=fake.sleep)
    http = HttpClient(
        "emissary",
        EMISSARY,
        token=EMISSARY_KEY,
        auth_header="X-API-Key",
        auth_scheme=None,
        credential_var="EMISSARY_CLIENT_API_KEY",
        limiter=limiter,
        policy=RetryPolicy(max_attempts=max_attempts),
        sleep=fake.sleep,
    )
    return EmissaryProvider(http)


def problem(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    import httpx

    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/problem+json", **(headers or {})},
    )
