"""The app driven in-process through httpx.ASGITransport (no socket), as other test suites use it."""
from __future__ import annotations

import asyncio

import httpx

from jobrunner.local.app import create_app
from jobrunner.local.replicate.catalog import ECHO_VERSION, SLEEP_VERSION


def test_predictions_in_process(tmp_path):
    async def main() -> tuple[dict, dict, dict]:
        app = create_app(tmp_path, "t", workers=1)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers={"Authorization": "Bearer t"}
            ) as c:
                echo = (await c.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"q": 1}},
                                     headers={"Prefer": "wait=5"})).json()
                sleep = (await c.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 0.1}},
                                      headers={"Prefer": "wait=20"})).json()
                anon = await c.get("/v1/account", headers={"Authorization": ""})
                return echo, sleep, anon.json()
        finally:
            await app.state.platform.shutdown()

    echo, sleep, anon = asyncio.run(main())
    assert echo["status"] == "succeeded" and echo["output"] == {"q": 1}
    assert echo["urls"]["get"].startswith("http://testserver/v1/predictions/")
    assert sleep["status"] == "succeeded" and sleep["output"] == {"slept": 0.1}
    assert anon["status"] == 401


def test_one_app_driven_by_successive_event_loops(tmp_path):
    app = create_app(tmp_path, "t", workers=1)

    async def once(n: int) -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": "Bearer t"}
        ) as c:
            resp = await c.post("/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 0}},
                                headers={"Prefer": "wait=20"})
            return resp.json()["status"]

    try:
        assert [asyncio.run(once(i)) for i in range(2)] == ["succeeded", "succeeded"]
    finally:
        asyncio.run(app.state.platform.shutdown())
