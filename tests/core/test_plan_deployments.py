"""Plans of deployments (pure, no mocks): create, update in place with a field diff, replace where a
field cannot change in place, delete on removal guarded by prevent_destroy, in every plan format."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import PlanError
from jobrunner.plan_types import CREATE, DELETE, FORGET, NOOP, REPLACE, UPDATE, WAIT
from jobrunner.providers.base import GONE, RUNNING, SUCCEEDED, JobStatus, RemoteJob
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.saved_plan import check_saved_plan, saved_plan_document
from jobrunner.state.model import StateDoc
from tests.core.plan_helpers import (
    FILE,
    actions,
    apply_all,
    deployment,
    emissary_deployment,
    plan_for,
    reasons,
    training,
)

API = "Deployment/poems-api"


def _by_address(plan, address):
    return next(c for c in plan.changes if c.address == address)


def test_a_new_deployment_is_created_with_every_field_shown(tmp_path: Path) -> None:
    plan = plan_for([deployment()], tmp_path, StateDoc(lineage="L"))
    change = _by_address(plan, API)
    assert change.action == CREATE and change.reason == "new deployment"
    assert change.input_diff["max_instances"] == [None, 1] and change.input_diff["hardware"] == [None, "cpu"]
    text = plan_text.render(plan, color=False)
    assert f"  + {API}  (new deployment)" in text and "+ max_instances: 1" in text


def test_an_unchanged_ready_deployment_is_converged(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    plan = plan_for([deployment()], tmp_path, doc)
    assert actions(plan) == {API: NOOP} and not plan.has_changes
    assert plan_text.render(plan, color=False).strip() == "No changes. Your jobs match the manifests."


def test_scaling_is_an_in_place_update_with_a_field_diff_in_every_format(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    plan = plan_for([deployment(max_instances=3)], tmp_path, doc)
    change = _by_address(plan, API)
    assert change.action == UPDATE
    assert change.reason == "max_instances (1 -> 3) changed: updated in place"
    assert change.input_diff == {"max_instances": [1, 3]}

    text = plan_text.render(plan, color=False)
    assert f"  ~ {API}  (max_instances (1 -> 3) changed: updated in place)" in text
    assert "        ~ max_instances: 1 -> 3" in text
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to retry, 0 to cancel, 0 to forget, 0 waiting." in text

    doc_json = json.loads(plan_json.render(plan))
    (entry,) = doc_json["changes"]
    assert entry["action"] == "update" and entry["destructive"] is False and entry["job_kind"] == "deployment"
    assert entry["input_diff"] == {"max_instances": [1, 3]} and doc_json["summary"]["update"] == 1

    md = plan_markdown.render(plan)
    assert "| create | update | replace |" in md and f"| `{API}` | update | max_instances (1 -&gt; 3)" in md
    assert "- max_instances: 1\n+ max_instances: 3" in md


def test_several_updatable_fields_still_update_in_place(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    plan = plan_for([deployment(version="2" * 64, hardware="gpu-t4", min_instances=1, max_instances=2)], tmp_path, doc)
    change = _by_address(plan, API)
    assert change.action == UPDATE
    assert set(change.input_diff) == {"version", "hardware", "min_instances", "max_instances"}


def test_a_field_that_cannot_change_in_place_replaces_the_deployment(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    plan = plan_for([deployment(model="me/verses", max_instances=3)], tmp_path, doc)
    change = _by_address(plan, API)
    assert change.action == REPLACE
    assert change.reason == ("max_instances, model changed; model cannot change in place: deleted, then created "
                             "again")


def test_emissary_updates_nothing_in_place_and_its_description_is_only_a_label(tmp_path: Path) -> None:
    doc = apply_all([emissary_deployment()], tmp_path)
    relabelled = plan_for([emissary_deployment(description="now with a description")], tmp_path, doc)
    assert actions(relabelled) == {"Deployment/chat": NOOP}
    plan = plan_for([emissary_deployment(checkpoint=5)], tmp_path, doc)
    change = _by_address(plan, "Deployment/chat")
    assert change.action == REPLACE and "checkpoint cannot change in place" in change.reason


def test_a_version_known_after_apply_is_an_update_when_the_training_reruns(tmp_path: Path) -> None:
    resources = [training(), deployment(model=None, version="${Training.poems.output.version}")]
    doc = apply_all(resources, tmp_path)
    assert actions(plan_for(resources, tmp_path, doc)) == {"Training/poems": NOOP, API: NOOP}
    retrained = [training(input={"order": 5}), resources[1]]
    plan = plan_for(retrained, tmp_path, doc)
    assert actions(plan) == {"Training/poems": REPLACE, API: UPDATE}
    assert reasons(plan)[API] == "version known after apply: updated in place"


def test_removal_deletes_the_deployment_and_says_so_as_destructive(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    plan = plan_for([], tmp_path, doc, planned_files={FILE})
    change = _by_address(plan, API)
    assert change.action == DELETE
    assert change.reason == f"removed from the manifests: r-{API} is deleted on the provider"

    text = plan_text.render(plan, color=False)
    assert f"  - {API}  (delete: removed from the manifests" in text
    assert f"Destructive: This plan deletes 1 deployment on the provider: {API}" in text
    assert "0 to cancel, 1 to delete, 0 to forget" in text

    (entry,) = json.loads(plan_json.render(plan))["changes"]
    assert entry["action"] == "delete" and entry["destructive"] is True

    md = plan_markdown.render(plan)
    assert f"> **Destructive:** This plan deletes 1 deployment on the provider: {API}" in md
    assert f"| `{API}` | **delete** (destructive) |" in md and "| delete |" in md


def test_prevent_destroy_refuses_a_removal_even_after_the_manifest_is_gone(tmp_path: Path) -> None:
    doc = apply_all([deployment(lifecycle={"prevent_destroy": True})], tmp_path)
    assert doc.addresses[API].lifecycle == {"prevent_destroy": True}
    with pytest.raises(PlanError) as info:
        plan_for([], tmp_path, doc, planned_files={FILE})
    assert "prevent_destroy is true" in str(info.value) and f"  {API}" in str(info.value)


def test_prevent_destroy_refuses_a_replace_but_allows_an_update(tmp_path: Path) -> None:
    guarded: dict[str, Any] = {"lifecycle": {"prevent_destroy": True}}
    doc = apply_all([deployment(**guarded)], tmp_path)
    assert actions(plan_for([deployment(max_instances=4, **guarded)], tmp_path, doc)) == {API: UPDATE}
    with pytest.raises(PlanError):
        plan_for([deployment(model="me/verses", **guarded)], tmp_path, doc)


def test_a_deployment_deleted_outside_is_created_again_and_forgotten_when_removed(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    gone = {API: RemoteJob(id=f"r-{API}", job_kind="deployment", status=GONE)}
    plan = plan_for([deployment()], tmp_path, doc, remote=gone)
    assert actions(plan) == {API: CREATE} and "deleted outside jobrunner" in reasons(plan)[API]
    removed = plan_for([], tmp_path, doc, remote=gone, planned_files={FILE})
    assert actions(removed) == {API: FORGET}


def test_a_deployment_still_starting_is_waited_on(tmp_path: Path) -> None:
    doc = apply_all([emissary_deployment()], tmp_path, status=RUNNING)
    plan = plan_for([emissary_deployment()], tmp_path, doc)
    assert actions(plan) == {"Deployment/chat": WAIT}


def test_a_failed_deployment_needs_attention_not_a_loop_of_creates(tmp_path: Path) -> None:
    doc = apply_all([emissary_deployment()], tmp_path, status="failed")
    change = _by_address(plan_for([emissary_deployment()], tmp_path, doc), "Deployment/chat")
    assert change.action == NOOP and not change.quiet
    assert "jobrunner apply --replace Deployment/chat" in change.reason


def test_a_saved_plan_keeps_the_update_and_goes_stale_when_it_would_replace(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    resources = [deployment(max_instances=3)]
    plan = replace(plan_for(resources, tmp_path, doc), state_lineage="L", manifests_digest="d")
    saved = json.loads(json.dumps(saved_plan_document(plan, resources, (), None)))
    assert saved["changes"][0]["action"] == "update"
    checked = check_saved_plan(saved, plan, resources)
    assert [c.action for c in checked.plan.changes] == [UPDATE]
    fresh = replace(plan_for([deployment(model="me/verses", max_instances=3)], tmp_path, doc), state_lineage="L")
    from jobrunner.errors import StalePlanError

    with pytest.raises(StalePlanError):
        check_saved_plan(saved, fresh, resources)


def test_destroy_deletes_deployments_unless_prevent_destroy(tmp_path: Path) -> None:
    from jobrunner.reconcile.planning import destroy_changes

    doc = apply_all([deployment(), emissary_deployment(lifecycle={"prevent_destroy": True})], tmp_path)
    (change,) = destroy_changes({API: doc.addresses[API]}, {})
    assert change.action == DELETE and change.reason == f"r-{API} is deleted, then forgotten"
    # The manifest is gone: the lifecycle state recorded still protects it.
    with pytest.raises(PlanError) as info:
        destroy_changes(dict(doc.addresses), {})
    assert "prevent_destroy" in str(info.value) and "Deployment/chat" in str(info.value)


def _seen(status: str = "succeeded", **settings) -> dict[str, RemoteJob]:
    base = {"model": "me/poems", "version": "1" * 64, "hardware": "cpu", "min_instances": 0, "max_instances": 1}
    return {API: RemoteJob(id=f"r-{API}", job_kind="deployment", status=JobStatus(status),
                           extra={"settings": {**base, **settings}})}


def test_a_deployment_changed_outside_jobrunner_is_put_back(tmp_path: Path) -> None:
    doc = apply_all([deployment()], tmp_path)
    assert actions(plan_for([deployment()], tmp_path, doc, remote=_seen())) == {API: NOOP}
    scaled = _by_address(plan_for([deployment()], tmp_path, doc, remote=_seen(max_instances=5)), API)
    assert scaled.action == UPDATE and scaled.input_diff == {"max_instances": [5, 1]}
    assert scaled.reason == "max_instances was changed outside jobrunner (5 -> 1): updated back in place"
    repointed = _by_address(plan_for([deployment()], tmp_path, doc, remote=_seen(model="acme/x")), API)
    assert repointed.action == REPLACE and "model cannot change in place" in repointed.reason


def test_refresh_reads_every_tracked_deployment_even_a_ready_one(tmp_path: Path) -> None:
    import asyncio

    from jobrunner.errors import NotFoundError
    from jobrunner.providers.base import RemoteDeployment
    from jobrunner.refresh import absorb, refresh_tracked

    class Provider:  # the wire client's deployment read, as plain data
        async def get_deployment(self, deployment_id, *, project_id=None):
            if deployment_id != f"r-{API}":
                raise NotFoundError("gone")
            return RemoteDeployment(id=deployment_id, name="poems-api", status=SUCCEEDED, url="http://x/d",
                                    version="1" * 64, settings={"max_instances": 2})

    class Pool:
        def get(self, name):
            return Provider()

    doc = apply_all([deployment(), deployment(name="old-api")], tmp_path)
    seen = asyncio.run(refresh_tracked(doc, Pool()))
    assert seen[API].extra["settings"] == {"max_instances": 2} and seen["Deployment/old-api"].status == GONE
    doc.addresses[API].outputs = {}
    assert sorted(absorb(doc, seen)) == ["Deployment/old-api", API]
    assert doc.addresses[API].outputs == {"id": f"r-{API}", "name": "poems-api", "url": "http://x/d",
                                          "version": "1" * 64}


def test_a_plan_of_some_files_asks_only_about_their_deployments() -> None:
    from jobrunner.reconcile.planning import _refreshed
    from jobrunner.state.model import AddressState

    doc = StateDoc(lineage="L")
    for address, kind, file in (("Deployment/here", "deployment", "specs/a/d.yaml"),
                                ("Deployment/elsewhere", "deployment", "specs/b/d.yaml"),
                                ("Training/elsewhere", "training", "specs/b/t.yaml")):
        doc.addresses[address] = AddressState(address=address, kind=address.split("/")[0], job_kind=kind,
                                              provider="emissary", file=file)
    assert _refreshed(doc, ["specs/a"]) == ["Deployment/here", "Training/elsewhere"]
    assert sorted(_refreshed(doc, ["."])) == ["Deployment/elsewhere", "Deployment/here", "Training/elsewhere"]


def test_a_lifecycle_added_to_an_unchanged_deployment_is_recorded_by_the_next_apply(tmp_path: Path) -> None:
    from jobrunner.reconcile.planning import record_lifecycles

    doc = apply_all([deployment()], tmp_path)
    protected = deployment(lifecycle={"prevent_destroy": True})
    plan = plan_for([protected], tmp_path, doc)
    assert actions(plan) == {API: NOOP}  # a lifecycle enters no fingerprint
    assert record_lifecycles(plan, {protected.address: protected}, doc) == [API]
    assert doc.addresses[API].lifecycle == {"prevent_destroy": True}
    assert record_lifecycles(plan, {protected.address: protected}, doc) == []
    with pytest.raises(PlanError, match="prevent_destroy"):
        plan_for([], tmp_path, doc)
