"""Token buckets per provider and request class, on a fake clock."""
from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
import respx

from jobrunner.errors import ConfigError
from jobrunner.providers.base import CreateRequest
from jobrunner.providers.ratelimit import CREATE, OTHER, REPLICATE_LIMITS, RateLimiter, RateLimits, TokenBucket

from .conftest import REPLICATE, FakeTime, problem, replicate_provider, run

V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"


def test_bucket_spends_its_burst_then_paces_at_the_rate():
    fake = FakeTime()
    bucket = TokenBucket(600, clock=fake.clock, sleep=fake.sleep)  # 10/s, burst one second's worth

    async def take(n):
        for _ in range(n):
            await bucket.acquire()

    start = fake.now
    run(take(10))
    assert fake.now == start  # the burst is free
    run(take(60))
    assert fake.now - start == pytest.approx(6.0, abs=1e-6)  # then exactly 10 per second


def test_concurrent_acquirers_are_spread_evenly():
    fake = FakeTime()
    bucket = TokenBucket(3000, burst=1, clock=fake.clock, sleep=fake.sleep)  # 50/s
    stamps: list[float] = []

    async def one():
        await bucket.acquire()
        stamps.append(fake.now)

    async def many():
        await asyncio.gather(*(one() for _ in range(101)))

    run(many())
    assert stamps[-1] - stamps[0] == pytest.approx(2.0, abs=1e-6)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) == pytest.approx(0.02, abs=1e-6)


def test_unlimited_bucket_never_waits_but_obeys_a_pause():
    fake = FakeTime()
    bucket = TokenBucket(None, clock=fake.clock, sleep=fake.sleep)

    async def take(n):
        for _ in range(n):
            await bucket.acquire()

    run(take(1000))
    assert fake.sleeps == []
    bucket.on_throttled(4.0)
    run(take(1))
    assert fake.sleeps == [4.0]


def test_429_pauses_and_slows_then_recovers():
    fake = FakeTime()
    bucket = TokenBucket(600, clock=fake.clock, sleep=fake.sleep)
    bucket.on_throttled(3.0)
    assert bucket.rate == pytest.approx(480)
    run(bucket.acquire())
    assert fake.now - 1000.0 >= 3.0
    for _ in range(20):
        bucket.on_success()
    assert bucket.rate == 600


def test_server_budget_headers():
    fake = FakeTime()
    limiter = RateLimiter(RateLimits(600, 3000), clock=fake.clock, sleep=fake.sleep)
    limiter.observe(CREATE, 201, {"ratelimit-remaining": "3", "ratelimit-reset": "1"}, None)
    assert limiter.bucket(CREATE).tokens == 3
    limiter.observe(OTHER, 200, {"ratelimit-remaining": "0", "ratelimit-reset": "2"}, None)
    run(limiter.acquire(OTHER))
    assert fake.now - 1000.0 == pytest.approx(1 / 50, abs=1e-6)  # paced: one token's time, no pause
    # the create bucket is untouched by the other class
    before = fake.now
    run(limiter.acquire(CREATE))
    assert fake.now == before


def test_unpaced_class_waits_for_the_reset_when_nothing_remains():
    fake = FakeTime()
    limiter = RateLimiter(RateLimits(None, None), clock=fake.clock, sleep=fake.sleep)
    limiter.observe(OTHER, 200, {"ratelimit-remaining": "0", "ratelimit-reset": "2"}, None)
    run(limiter.acquire(OTHER))
    assert fake.now - 1000.0 == pytest.approx(2.0)


def test_rate_limits_from_config():
    limits = RateLimits.from_config({"create_per_minute": 6000, "other_burst": 50}, REPLICATE_LIMITS)
    assert limits == RateLimits(6000.0, 3000.0, None, 50.0)
    assert RateLimits.from_config(None, REPLICATE_LIMITS) == RateLimits(600.0, 3000.0)
    assert RateLimits.from_config({"other_per_minute": 0}, REPLICATE_LIMITS).other_per_minute is None
    with pytest.raises(ConfigError) as info:
        RateLimits.from_config({"creates_per_minute": 5}, REPLICATE_LIMITS)
    assert "creates_per_minute" in str(info.value)
    with pytest.raises(ConfigError):
        RateLimits.from_config({"create_per_minute": "fast"}, REPLICATE_LIMITS)


def test_creates_are_paced_by_the_create_bucket_and_reads_by_the_other():
    fake = FakeTime()
    created = {
        "id": "p1",
        "model": "a/b",
        "version": V1,
        "input": {},
        "status": "starting",
        "created_at": "2026-01-01T00:00:00Z",
        "urls": {},
    }
    req = CreateRequest(job_kind="prediction", body={"input": {}}, version=V1)
    with respx.mock(base_url=REPLICATE) as mock:
        mock.post("/v1/predictions").mock(return_value=httpx.Response(201, json=created))
        mock.get("/v1/predictions/p1").mock(return_value=httpx.Response(200, json=created))
        provider = replicate_provider(fake, limits=RateLimits(60, 6000, 1, 1))  # 1 create/s, 100 reads/s

        async def flow():
            try:
                await asyncio.gather(*(provider.create(req) for _ in range(5)))
                t_creates = fake.now
                await asyncio.gather(*(provider.get("prediction", "p1") for _ in range(5)))
                return t_creates, fake.now - t_creates
            finally:
                await provider.aclose()

        t_creates, t_reads = run(flow())
    assert t_creates - 1000.0 == pytest.approx(4.0, abs=1e-6)
    assert t_reads == pytest.approx(0.04, abs=1e-6)
    assert provider.http.stats["requests.create"] == 5 and provider.http.stats["requests.other"] == 5


def test_a_429_pauses_the_whole_class_not_only_the_request():
    fake = FakeTime()
    created = {
        "id": "p1",
        "model": "a/b",
        "version": V1,
        "input": {},
        "status": "starting",
        "created_at": "2026-01-01T00:00:00Z",
        "urls": {},
    }
    req = CreateRequest(job_kind="prediction", body={"input": {}}, version=V1)
    calls: list[float] = []

    def handler(request):
        calls.append(fake.now)
        if len(calls) == 1:
            return problem(429, {"detail": "Request was throttled."}, {"Retry-After": "10"})
        return httpx.Response(201, json=created)

    with respx.mock(base_url=REPLICATE) as mock:
        mock.post("/v1/predictions").mock(side_effect=handler)
        provider = replicate_provider(fake)

        async def flow():
            try:
                await provider.create(req)
                await provider.create(req)  # a second create must wait out the pause too
            finally:
                await provider.aclose()

        run(flow())
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 10.0 and calls[2] >= calls[1]
    assert provider.http.stats["throttled"] == 1
