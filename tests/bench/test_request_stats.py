"""The local platform's request counter (`GET /_admin/stats`), which the benchmarks compare clients by."""
from __future__ import annotations

import asyncio

import httpx

from jobrunner.local.app import create_app
from jobrunner.local.replicate.catalog import ECHO_VERSION


def test_stats_count_requests_by_category_method_list_and_status(tmp_path):
    async def main() -> tuple[dict, dict]:
        app = create_app(tmp_path, "t", workers=1, faults={"rate_limit": "custom", "create_per_minute": 60, "burst": 2})
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                         headers={"Authorization": "Bearer t"}) as c:
                empty = (await c.get("/_admin/stats")).json()
                created = []
                for i in range(3):  # burst of 2: the third create is throttled
                    resp = await c.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"i": i}})
                    created.append(resp)
                assert [r.status_code for r in created] == [201, 201, 429]
                await c.get(f"/v1/predictions/{created[0].json()['id']}")
                await c.get("/v1/predictions")
                await c.get("/v1/account", headers={"Authorization": "Bearer wrong"})
                return empty, (await c.get("/_admin/stats")).json()
        finally:
            await app.state.platform.shutdown()

    empty, stats = asyncio.run(main())
    assert empty == {}  # admin routes are not counted
    assert stats["requests"] == 6
    assert stats["category.create"] == 3 and stats["category.get"] == 1 and stats["category.other"] == 2
    assert stats["method.POST"] == 3 and stats["method.GET"] == 3
    assert stats["list.predictions"] == 1
    assert stats["status.201"] == 2 and stats["status.429"] == 1 and stats["status.200"] == 2
    assert stats["status.401"] == 1


def test_stats_need_the_token(tmp_path):
    async def main() -> int:
        app = create_app(tmp_path, "t", workers=1)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
                return (await c.get("/_admin/stats")).status_code
        finally:
            await app.state.platform.shutdown()

    assert asyncio.run(main()) == 401
