"""The official `replicate` Python client 1.0.7, unmodified, on the local platform's deployments,
version deletes and progress lines.

The path a user takes after a fine-tune: train `jobrunner/ngram` into a model, put the new version
behind a deployment, run predictions through it, change its scaling (a new release), point it at
another version, then clean up: delete the deployment and the versions (which answered 405 before).
`prediction.progress`, which the client parses from tqdm lines in the logs, is read for
`jobrunner/sleep` while it runs and after, and for an n-gram training.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
import replicate
from replicate.exceptions import ReplicateError

from tests.local.test_official_replicate import NGRAM, SLEEP, TEXT, poll_training
from tests.platform_fixture import LivePlatform

pytestmark = pytest.mark.slow  # the official client against a live platform (full suite only)


@pytest.fixture
def rc(live_platform: LivePlatform) -> replicate.Client:
    return replicate.Client(api_token=live_platform.token, base_url=live_platform.url)


def _train(rc: replicate.Client, destination: str) -> Any:
    training = rc.trainings.create(model="jobrunner/ngram", version=NGRAM, input={"train_data": TEXT},
                                   destination=destination)
    done = poll_training(rc, training.id)
    assert done.status == "succeeded", (done.error, done.logs)
    return done


def test_deployments_create_get_update_list_predict_delete(rc: replicate.Client) -> None:
    rc.models.create(owner="me", name="poems", visibility="private", hardware="cpu")
    first = _train(rc, "me/poems").output["version"].split(":")[1]
    second = _train(rc, "me/poems").output["version"].split(":")[1]

    created = rc.deployments.create(name="poet", model="me/poems", version=first, hardware="cpu",
                                    min_instances=0, max_instances=1)
    assert created.id == "me/poet" and created.current_release is not None
    release = created.current_release
    assert (release.number, release.model, release.version) == (1, "me/poems", first)
    assert release.configuration.hardware == "cpu" and release.configuration.max_instances == 1
    assert release.created_by is not None and release.created_by.username == "me"

    got = rc.deployments.get("me/poet")
    assert got.current_release is not None and got.current_release.version == first
    prediction = got.predictions.create(input={"prompt": "The moon", "max_tokens": 30, "seed": 3})
    prediction.wait()
    assert prediction.status == "succeeded" and isinstance(prediction.output, str) and len(prediction.output) == 30
    assert prediction.version == first
    # The namespace form, and `predictions.create(deployment=...)`, reach the same endpoint.
    again = rc.deployments.predictions.create("me/poet", input={"prompt": "The moon", "max_tokens": 30, "seed": 3})
    again.wait()
    assert again.output == prediction.output
    by_name = rc.predictions.create(deployment="me/poet", input={"max_tokens": 5})
    by_name.wait()
    assert by_name.status == "succeeded" and len(by_name.output) == 5
    held = rc.deployments.predictions.create("me/poet", input={"max_tokens": 5}, wait=10)  # Prefer: wait=10
    assert held.status == "succeeded" and len(held.output) == 5

    scaled = rc.deployments.update("me", "poet", max_instances=3)
    assert scaled.current_release is not None and scaled.current_release.number == 2
    assert scaled.current_release.configuration.max_instances == 3
    moved = rc.deployments.update("me", "poet", version=second)
    assert moved.current_release is not None and moved.current_release.number == 3
    after = got.predictions.create(input={"max_tokens": 5})
    after.wait()
    assert after.version == second

    page = rc.deployments.list()
    assert [d.id for d in page.results] == ["me/poet"]

    with pytest.raises(ReplicateError) as refused:
        rc.deployments.create(name="big", model="me/poems", version=first, hardware="gpu-h9000",
                              min_instances=0, max_instances=1)
    assert refused.value.status == 422 and "hardware" in str(refused.value.detail)

    assert rc.deployments.delete("me", "poet") is True  # 204
    with pytest.raises(ReplicateError) as gone:
        rc.deployments.get("me/poet")
    assert gone.value.status == 404


def test_versions_delete_succeeds_and_the_version_is_gone(rc: replicate.Client) -> None:
    model = rc.models.create(owner="me", name="drafts", visibility="private", hardware="cpu")
    version_id = _train(rc, "me/drafts").output["version"].split(":")[1]
    assert rc.models.get("me/drafts").versions.get(version_id).id == version_id

    # 1.0.7 reports `status_code == 204`, so the documented 202 reads as False; it must not raise
    # (it raised ReplicateError 405 before the local platform had the endpoint).
    assert model.versions.delete(version_id) is False
    with pytest.raises(ReplicateError) as gone:
        model.versions.get(version_id)
    assert gone.value.status == 404
    with pytest.raises(ReplicateError) as refused:
        rc.predictions.create(version=version_id, input={"max_tokens": 3})
    assert refused.value.status == 422
    assert rc.models.get("me/drafts").latest_version is None


def test_prediction_progress_of_sleep_while_running_and_after(rc: replicate.Client) -> None:
    # 3 s in 10 steps: at least one poll lands mid-run even on a loaded machine (each poll is ms).
    prediction = rc.predictions.create(version=SLEEP, input={"seconds": 3, "log_lines": 10})
    deadline = time.monotonic() + 60
    seen: list[Any] = []
    while time.monotonic() < deadline:
        prediction.reload()
        if prediction.status != "processing" and seen:
            break
        if prediction.progress is not None and prediction.status == "processing":
            seen.append(prediction.progress)
        time.sleep(0.05)
    prediction.wait()
    assert prediction.status == "succeeded"
    assert seen, prediction.logs  # progress was readable while it ran
    assert all(p.total == 10 and 1 <= p.current <= 10 for p in seen)
    assert seen[0].current < 10 and seen[0].percentage == seen[0].current / 10
    final = prediction.progress
    assert final is not None and (final.percentage, final.current, final.total) == (1.0, 10, 10)


def test_prediction_progress_of_an_ngram_training(rc: replicate.Client) -> None:
    rc.models.create(owner="me", name="lines", visibility="private", hardware="cpu")
    done = _train(rc, "me/lines")
    # Training has no `progress` in 1.0.7; a training is also a prediction on Replicate's API.
    as_prediction = rc.predictions.get(done.id)
    progress = as_prediction.progress
    assert progress is not None and progress.percentage == 1.0 and progress.current == progress.total == len(TEXT)
    assert replicate.prediction.Prediction.Progress.parse(done.logs) == progress
