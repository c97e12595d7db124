"""Saved plans: only what a plan touches can make it stale, and applying it never does more."""
from __future__ import annotations

import json

import pytest

from jobrunner.errors import StalePlanError
from jobrunner.exitcodes import ExitCode, for_error
from jobrunner.plan_types import CREATE, NOOP, REPLACE, RETRY, WAIT, Action, Plan, PlannedChange
from jobrunner.resources import Resource
from jobrunner.saved_plan import check_saved_plan, saved_plan_document, spec_digest
from jobrunner.state.model import AddressState

LINEAGE = "lin-1"


def res(name: str, kind: str = "Training", **spec) -> Resource:
    base = {"provider": "local", "model": "jobrunner/ngram", "version": "v1", "input": {"order": 3}}
    base.update(spec)
    return Resource(kind=kind, name=name, spec=base, file=f"specs/{name}.yaml", line=1)


def prior(address: str, status: str, remote_id: str) -> AddressState:
    return AddressState(address=address, kind=address.split("/")[0], job_kind="training", provider="local",
                        file="specs/x.yaml", fingerprint="old", remote_id=remote_id, status=status, attempts=1)


def change(address: str, action: Action, *, fp: str | None = "fp", status: str | None = None,
           remote_id: str | None = None) -> PlannedChange:
    p = prior(address, status or "succeeded", remote_id) if remote_id else None
    return PlannedChange(address=address, action=action, reason="because", job=None, prior=p,
                         fingerprint_after=fp, remote_status=status)


def plan(*changes: PlannedChange, lineage: str = LINEAGE, digest: str = "d1", serial: int = 4) -> Plan:
    return Plan(changes=list(changes), paths=["specs"], manifests_digest=digest, state_lineage=lineage,
                state_serial=serial)


def saved(p: Plan, resources: list[Resource]) -> dict:
    # Through JSON, exactly as `plan --out` writes and `apply plan.json` reads it.
    return json.loads(json.dumps(saved_plan_document(p, resources, (), None)))


RESOURCES = [res("a"), res("b"), res("c")]


def reviewed() -> Plan:
    return plan(
        change("Training/a", CREATE, fp="fa"),
        change("Training/b", REPLACE, fp="fb2", status="running", remote_id="rb"),
        change("Training/c", NOOP, fp="fc", status="succeeded", remote_id="rc"),
    )


def test_unrelated_changes_never_make_it_stale_and_are_not_applied():
    doc = saved(reviewed(), RESOURCES)
    # Since the plan: another apply bumped the serial, another manifest changed (new digest), a new
    # resource appeared, and an untouched address now wants a retry.
    fresh = plan(
        change("Training/a", CREATE, fp="fa"),
        change("Training/b", REPLACE, fp="fb2", status="running", remote_id="rb"),
        change("Training/c", RETRY, fp="fc", status="failed", remote_id="rc"),
        change("Training/new", CREATE, fp="fn"),
        digest="d2", serial=9,
    )
    checked = check_saved_plan(doc, fresh, RESOURCES + [res("new")])
    assert [c.address for c in checked.plan.changes] == ["Training/a", "Training/b"]
    assert checked.held_back == {"Training/c": RETRY, "Training/new": CREATE}
    assert "Training/new (create)" in checked.notes()[0]


def test_a_touched_address_whose_remote_status_moved_is_stale_with_exit_3():
    doc = saved(reviewed(), RESOURCES)
    fresh = plan(
        change("Training/a", CREATE, fp="fa"),
        change("Training/b", REPLACE, fp="fb2", status="succeeded", remote_id="rb"),
        change("Training/c", NOOP, fp="fc", status="succeeded", remote_id="rc"),
    )
    with pytest.raises(StalePlanError) as info:
        check_saved_plan(doc, fresh, RESOURCES)
    err = info.value
    assert for_error(err) == ExitCode.STALE_PLAN
    assert err.changes == {"Training/b": "remote status was running, now succeeded"}
    assert "Training/b: remote status was running, now succeeded" in err.message
    assert "nothing was applied" in err.hint


def test_someone_else_applied_the_create_first():
    doc = saved(reviewed(), RESOURCES)
    fresh = plan(
        change("Training/a", WAIT, fp="fa", status="running", remote_id="ra"),
        change("Training/b", REPLACE, fp="fb2", status="running", remote_id="rb"),
        change("Training/c", NOOP, fp="fc", status="succeeded", remote_id="rc"),
    )
    with pytest.raises(StalePlanError) as info:
        check_saved_plan(doc, fresh, RESOURCES)
    assert list(info.value.changes) == ["Training/a"]
    assert info.value.changes["Training/a"].startswith("planned create, now wait")


def test_a_different_remote_job_or_desired_job_is_stale():
    doc = saved(reviewed(), RESOURCES)
    fresh = plan(
        change("Training/a", CREATE, fp="fa-edited"),
        change("Training/b", REPLACE, fp="fb2", status="running", remote_id="rb-other"),
        change("Training/c", NOOP, fp="fc", status="succeeded", remote_id="rc"),
    )
    with pytest.raises(StalePlanError) as info:
        check_saved_plan(doc, fresh, RESOURCES)
    assert set(info.value.changes) == {"Training/a", "Training/b"}
    assert "desired job changed" in info.value.changes["Training/a"]
    assert "rb-other" in info.value.changes["Training/b"]


def test_settings_outside_the_fingerprint_of_a_touched_resource_make_it_stale_but_not_elsewhere():
    doc = saved(reviewed(), RESOURCES)
    edited = [res("a", timeout="5m"), res("b"), res("c", timeout="1h")]  # a is touched, c is not
    with pytest.raises(StalePlanError) as info:
        check_saved_plan(doc, reviewed(), edited)
    assert set(info.value.changes) == {"Training/a"}
    assert "timeout" in info.value.changes["Training/a"]


def test_a_replaced_state_makes_the_whole_plan_stale():
    doc = saved(reviewed(), RESOURCES)
    with pytest.raises(StalePlanError) as info:
        check_saved_plan(doc, plan(*reviewed().changes, lineage="lin-2"), RESOURCES)
    assert "(state)" in info.value.changes


def test_an_unchanged_world_applies_the_plan_as_reviewed():
    doc = saved(reviewed(), RESOURCES)
    checked = check_saved_plan(doc, reviewed(), RESOURCES)
    assert [(c.address, c.action) for c in checked.plan.changes] == [
        ("Training/a", CREATE), ("Training/b", REPLACE), ("Training/c", NOOP)]
    assert checked.held_back == {} and checked.notes() == []


def test_batch_item_rows_do_not_put_each_other_out_of_scope():
    batch = res("eval", kind="PredictionBatch", inputs=[{"key": "x", "prompt": "a"}])
    edited = res("eval", kind="PredictionBatch", inputs=[{"key": "x", "prompt": "a"}, {"key": "y", "prompt": "b"}])
    assert spec_digest(batch.spec) == spec_digest(edited.spec)
    assert spec_digest(batch.spec) != spec_digest({**batch.spec, "output_file": "out.jsonl"})
    p = plan(change("PredictionBatch/eval[x]", CREATE, fp="fx"))
    fresh = plan(change("PredictionBatch/eval[x]", CREATE, fp="fx"), change("PredictionBatch/eval[y]", CREATE, fp="fy"))
    checked = check_saved_plan(saved(p, [batch]), fresh, [edited])
    assert [c.address for c in checked.plan.changes] == ["PredictionBatch/eval[x]"]
    assert checked.held_back == {"PredictionBatch/eval[y]": CREATE}


def test_saved_document_records_what_was_seen_per_touched_address():
    doc = saved(reviewed(), RESOURCES)
    by = {e["address"]: e for e in doc["changes"]}
    assert by["Training/b"] == {"address": "Training/b", "action": REPLACE, "touches": True,
                                "fingerprint_after": "fb2", "remote_status": "running", "remote_id": "rb",
                                "spec_digest": spec_digest(RESOURCES[1].spec)}
    assert by["Training/c"]["touches"] is False
    assert doc["manifests_digest"] == "d1" and doc["state_lineage"] == LINEAGE
