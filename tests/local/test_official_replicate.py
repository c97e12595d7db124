"""The official `replicate` Python client 1.0.7, unmodified, against a live local platform.

This is the "new user" path: create a destination model, train `jobrunner/ngram` into it, predict
with the new version, page through predictions, and the create/get/list/cancel/wait calls of
predictions and trainings, all through the client's own request and response handling.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
import replicate
from replicate.exceptions import ReplicateError

from tests.platform_fixture import LivePlatform

pytestmark = pytest.mark.slow  # the official client against a live platform (full suite only)

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"

TEXT = (
    "The moon rises over the quiet sea, and the stars answer with a slow light.\n"
    "At dawn the birds begin again; at dusk the river keeps its counsel.\n"
) * 20


@pytest.fixture
def rc(live_platform: LivePlatform) -> replicate.Client:
    return replicate.Client(api_token=live_platform.token, base_url=live_platform.url)


def poll_training(rc: replicate.Client, training_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        t = rc.trainings.get(training_id)
        if t.status in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return t
        time.sleep(0.05)


def test_new_user_flow_model_training_prediction(rc: replicate.Client) -> None:
    model = rc.models.create(owner="me", name="poems", visibility="private", hardware="cpu", description="poems")
    assert (model.owner, model.name) == ("me", "poems")
    assert rc.models.get("me/poems").name == "poems"

    with pytest.raises(ReplicateError) as missing:
        rc.trainings.create(
            model="jobrunner/ngram", version=NGRAM, input={"train_data": TEXT}, destination="me/nowhere"
        )
    assert missing.value.status == 404
    assert missing.value.detail == "The specified training destination does not exist"

    training = rc.trainings.create(
        model="jobrunner/ngram", version=NGRAM, input={"train_data": TEXT, "order": 5}, destination="me/poems"
    )
    assert training.status in ("starting", "processing")
    done = poll_training(rc, training.id)
    assert done.status == "succeeded", (done.error, done.logs)
    new_version = done.output["version"]
    assert new_version.startswith("me/poems:") and len(new_version.split(":")[1]) == 64
    assert done.output["weights"]
    version_id = new_version.split(":")[1]
    assert rc.models.get("me/poems").latest_version.id == version_id

    first = rc.predictions.create(version=version_id, input={"prompt": "The moon", "max_tokens": 60, "seed": 7})
    first.wait()
    assert first.status == "succeeded" and isinstance(first.output, str) and len(first.output) == 60
    again = rc.predictions.create(version=version_id, input={"prompt": "The moon", "max_tokens": 60, "seed": 7})
    again.wait()
    assert again.output == first.output  # same seed, same text
    assert first.metrics and "predict_time" in first.metrics
    # replicate.run resolves the version and reads its schema through the client as well.
    assert rc.run(new_version, input={"prompt": "At dawn", "max_tokens": 20, "seed": 1})


def test_predictions_list_pages_over_more_than_one_hundred(rc: replicate.Client, live_platform: LivePlatform) -> None:
    created = {rc.predictions.create(version=ECHO, input={"text": f"item {i}"}).id for i in range(105)}
    page = rc.predictions.list()
    assert len(page.results) == 100 and page.next and page.next.startswith(live_platform.url)
    assert page.results[0].id not in {p.id for p in rc.predictions.list(page.next).results}
    seen: list[str] = []
    for pg in replicate.paginate(rc.predictions.list):
        seen.extend(p.id for p in pg.results)
    assert len(seen) == len(set(seen)) and created <= set(seen)
    assert len(seen) >= 105


def test_prediction_create_get_wait_cancel(rc: replicate.Client) -> None:
    p = rc.predictions.create(version=ECHO, input={"text": "hello"})
    p.wait()
    assert p.status == "succeeded" and p.output == {"text": "hello"}
    assert rc.predictions.get(p.id).output == {"text": "hello"}

    waited = rc.predictions.create(version=ECHO, input={"text": "now"}, wait=5)
    assert waited.status == "succeeded"

    slow = rc.predictions.create(version=SLEEP, input={"seconds": 30, "log_lines": 30})
    deadline = time.monotonic() + 10
    while rc.predictions.get(slow.id).status == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
    slow.cancel()
    assert slow.status == "canceled"
    got = rc.predictions.get(slow.id)
    assert got.status == "canceled" and got.completed_at
    assert slow.id in {x.id for x in rc.predictions.list().results}

    failing = rc.predictions.create(version=SLEEP, input={"seconds": 0.01, "fail": True})
    failing.wait()
    assert failing.status == "failed" and failing.error


def test_trainings_create_get_list_cancel(rc: replicate.Client) -> None:
    rc.models.create(owner="me", name="big", visibility="private", hardware="cpu")
    t = rc.trainings.create(
        model="jobrunner/ngram", version=NGRAM, input={"train_data": TEXT * 400}, destination="me/big"
    )
    t.cancel()
    assert t.status == "canceled"
    assert rc.trainings.get(t.id).status == "canceled"
    ok = rc.trainings.create(model="jobrunner/ngram", version=NGRAM, input={"train_data": TEXT}, destination="me/big")
    listed = rc.trainings.list()
    assert [x.id for x in listed.results][:2] == [ok.id, t.id]  # newest first
    assert poll_training(rc, ok.id).status == "succeeded"


def test_bad_token_is_a_401_replicate_error(live_platform: LivePlatform) -> None:
    bad = replicate.Client(api_token="nope", base_url=live_platform.url)
    with pytest.raises(ReplicateError) as err:
        bad.predictions.list()
    assert err.value.status == 401
