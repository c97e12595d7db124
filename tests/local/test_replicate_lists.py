"""Cursor pagination of the Replicate lists: 100 a page, newest first, absolute links, time filters."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx

from jobrunner.local.replicate.catalog import ECHO_VERSION


def _create(client: httpx.Client, n: int) -> list[str]:
    return [
        client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"i": i}}).json()["id"] for i in range(n)
    ]


def test_predictions_page_newest_first_with_absolute_cursors(client, live_platform):
    ids = _create(client, 205)
    newest_first = list(reversed(ids))

    page1 = client.get("/v1/predictions").json()
    assert [p["id"] for p in page1["results"]] == newest_first[:100]
    assert page1["previous"] is None
    assert page1["next"].startswith(f"{live_platform.url}/v1/predictions?cursor=")

    page2 = client.get(page1["next"]).json()
    assert [p["id"] for p in page2["results"]] == newest_first[100:200]
    page3 = client.get(page2["next"]).json()
    assert [p["id"] for p in page3["results"]] == newest_first[200:]
    assert page3["next"] is None

    back = client.get(page3["previous"]).json()
    assert [p["id"] for p in back["results"]] == newest_first[100:200]
    first_again = client.get(back["previous"]).json()
    assert [p["id"] for p in first_again["results"]] == newest_first[:100]
    assert first_again["previous"] is None


def test_created_after_and_before_filters(client):
    _create(client, 3)
    time.sleep(0.05)
    middle = client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {}}).json()
    time.sleep(0.05)
    later = _create(client, 2)
    after = client.get("/v1/predictions", params={"created_after": middle["created_at"]}).json()["results"]
    assert [p["id"] for p in after] == list(reversed(later)) + [middle["id"]]  # inclusive
    before = client.get("/v1/predictions", params={"created_before": middle["created_at"]}).json()["results"]
    assert middle["id"] not in {p["id"] for p in before} and len(before) == 3  # exclusive
    assert client.get("/v1/predictions", params={"created_after": "yesterday"}).status_code == 400


def test_filters_survive_in_next_links(client):
    _create(client, 120)
    page = client.get("/v1/predictions", params={"created_after": "2000-01-01T00:00:00Z"}).json()
    query = urlsplit(page["next"]).query
    assert "created_after=" in query and "cursor=" in query
    assert len(client.get(page["next"]).json()["results"]) == 20


def test_bad_cursor_is_400(client):
    assert client.get("/v1/predictions", params={"cursor": "garbage!"}).status_code == 400


def test_trainings_list_holds_only_trainings(client):
    _create(client, 2)
    assert client.get("/v1/trainings").json() == {"next": None, "previous": None, "results": []}
