"""One remote job belongs to one address: the state model refuses a second owner.

Every writer records remote ids through `StateDoc.claim_remote_id`; a document loaded with a
clash is refused by `check_remote_ids` with the ids and addresses named.
"""
from __future__ import annotations

import json

import pytest

from jobrunner.errors import RemoteIdClashError, StateError
from jobrunner.providers.base import SUCCEEDED
from jobrunner.resources import JOB_PREDICTION
from jobrunner.state.model import AddressState, Attempt, StateDoc


def _st(address: str, remote_id: str | None, history: tuple[str, ...] = ()) -> AddressState:
    return AddressState(address=address, kind="PredictionBatch", job_kind="prediction", provider="local",
                        file="b.yaml", remote_id=remote_id,
                        history=[Attempt(remote_id=r, fingerprint="f", attempt=1, created_at="2026-01-01T00:00:00Z",
                                         status="succeeded") for r in history])


def test_claiming_an_id_another_address_records_is_an_error():
    doc = StateDoc(addresses={"B[a]": _st("B[a]", "p1", ("p1",))})
    doc.claim_remote_id("B[a]", "p1")  # the owner again: fine
    with pytest.raises(RemoteIdClashError) as err:
        doc.claim_remote_id("B[b]", "p1")
    assert isinstance(err.value, StateError)
    assert "p1" in str(err.value) and "B[a]" in str(err.value) and "B[b]" in str(err.value)


def test_an_id_only_in_history_is_still_owned():
    doc = StateDoc(addresses={"B[a]": _st("B[a]", "p2", ("p1", "p2"))})
    with pytest.raises(RemoteIdClashError):
        doc.claim_remote_id("B[b]", "p1")


def test_claims_in_one_run_see_each_other_and_a_forgotten_owner_frees_the_id():
    doc = StateDoc(addresses={"B[a]": _st("B[a]", None), "B[b]": _st("B[b]", None)})
    doc.claim_remote_id("B[a]", "p9")
    doc.addresses["B[a]"].remote_id = "p9"
    with pytest.raises(RemoteIdClashError):
        doc.claim_remote_id("B[b]", "p9")
    del doc.addresses["B[a]"]  # forgotten (state rm, removal): the id may be recorded elsewhere
    doc.claim_remote_id("B[b]", "p9")


def test_check_remote_ids_names_every_clash_and_the_way_out():
    doc = StateDoc(addresses={"B[a]": _st("B[a]", "p1", ("p1",)), "B[b]": _st("B[b]", "p1", ("p1",)),
                              "B[c]": _st("B[c]", "p3", ("p3",))})
    assert doc.remote_id_clashes() == {"p1": ["B[a]", "B[b]"]}
    with pytest.raises(RemoteIdClashError) as err:
        doc.check_remote_ids()
    assert "p1: B[a], B[b]" in str(err.value) and "state rm" in (err.value.hint or "")
    del doc.addresses["B[b]"]
    doc.check_remote_ids()


def test_models_are_not_jobs():
    model = _st("Model/m", "me/m")
    model.job_kind = "model"
    other = _st("Model/n", "me/m")
    other.job_kind = "model"
    StateDoc(addresses={"Model/m": model, "Model/n": other}).check_remote_ids()


def test_recovered_at_round_trips_and_is_absent_unless_set():
    doc = StateDoc(lineage="l", addresses={})
    assert "recovered_at" not in doc.to_json()
    doc.recovered_at = "2026-12-02T20:00:00Z"
    again = StateDoc.from_json(json.loads(json.dumps(doc.to_json())))
    assert again.recovered_at == "2026-12-02T20:00:00Z"


def test_import_cannot_record_a_job_another_address_owns():
    from jobrunner.providers.base import RemoteJob
    from jobrunner.reconcile.outputs import record_adoption
    from jobrunner.resources import DesiredJob

    doc = StateDoc(addresses={"B[a]": _st("B[a]", "p1", ("p1",))})
    job = DesiredJob(address="B[b]", resource_address="PredictionBatch/B", job_kind=JOB_PREDICTION, provider="local",
                     file="b.yaml", request={"input": {}}, fingerprint="f")
    with pytest.raises(RemoteIdClashError):
        record_adoption(doc, job, RemoteJob(id="p1", job_kind="prediction", status=SUCCEEDED))
    assert "B[b]" not in doc.addresses
