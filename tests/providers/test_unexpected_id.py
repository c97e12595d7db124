"""A provider answer about another job than the one asked for is a protocol error, never accepted.

Payloads are the real fixtures: a GET for one id answered with the (real) body of another job
(a misrouting proxy, a cache keyed wrongly, a provider bug). Accepting it would record someone
else's job under an address, status and outputs included.
"""
from __future__ import annotations

import json

import httpx
import pytest
import respx

from jobrunner.errors import ProtocolError, ProviderError, UnexpectedIdError

from .conftest import EMISSARY, REPLICATE, emissary_provider, fixture, replicate_provider, run

ASKED = "aaaaaaaaaaaaaaaaaaaaaaaaaa"


async def _call(provider, fn):
    try:
        return await fn(provider)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("kind,name", [("prediction", "prediction_get_succeeded.json"),
                                       ("training", "training_get_succeeded.json")])
def test_replicate_get_answered_for_another_job_is_a_protocol_error(fake_time, kind, name):
    body = fixture(f"replicate/{name}")
    assert body["id"] != ASKED
    with respx.mock(base_url=REPLICATE) as mock:
        route = mock.get(f"/v1/{kind}s/{ASKED}").mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(UnexpectedIdError) as err:
            run(_call(replicate_provider(fake_time), lambda p: p.get(kind, ASKED)))
    assert route.call_count == 1  # not retried: a second answer would be no more trustworthy
    assert isinstance(err.value, ProtocolError) and isinstance(err.value, ProviderError)
    assert ASKED in str(err.value) and body["id"] in str(err.value) and err.value.provider == "replicate"
    assert err.value.hint and "nothing was recorded" in err.value.hint


def test_replicate_get_with_the_id_asked_for_is_accepted(fake_time):
    body = fixture("replicate/prediction_get_succeeded.json")
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(f"/v1/predictions/{body['id']}").mock(return_value=httpx.Response(200, json=body))
        job = run(_call(replicate_provider(fake_time), lambda p: p.get("prediction", body["id"])))
    assert job.id == body["id"] and job.status == "succeeded"


def test_emissary_get_answered_for_another_job_is_a_protocol_error(fake_time):
    body = fixture("emissary/training_job_detail_and_list.json")["get"]["response"]["body"]
    assert body["id"] == "tr-12345"
    with respx.mock(base_url=EMISSARY) as mock:
        mock.get("/v1/projects/ms-12345/training-jobs/tr-99999").mock(
            return_value=httpx.Response(
                200, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
        )
        with pytest.raises(UnexpectedIdError) as err:
            run(_call(emissary_provider(fake_time), lambda p: p.get("training", "tr-99999", project_id="ms-12345")))
    assert "tr-12345" in str(err.value) and "tr-99999" in str(err.value) and err.value.provider == "emissary"


def test_bulk_refresh_never_records_a_job_under_another_id(fake_time):
    """refresh_many falls back to GETs for ids the list did not show: those GETs are checked too."""
    body = fixture("replicate/prediction_get_succeeded.json")
    with respx.mock(base_url=REPLICATE) as mock:
        mock.get(f"/v1/predictions/{ASKED}").mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(UnexpectedIdError):
            run(_call(replicate_provider(fake_time), lambda p: p.refresh_many("prediction", [ASKED])))
