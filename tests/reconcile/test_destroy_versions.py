"""The destroy plan honours `lifecycle.on_remove: delete_version`, and version deletes go last.

A training that succeeded and recorded its version is a destructive `delete` in destroy's plan
(text, JSON and Markdown call it out), from the manifest's lifecycle or, manifest gone, the one
state recorded; without it, still running, failed, or on a provider without the `delete_versions`
capability it is canceled or forgotten as before. `--target` of a version a kept deployment
serves is refused. Apply holds version deletes until deployments and removed batches are done.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jobrunner.errors import PlanError
from jobrunner.plan_types import CANCEL, DELETE, FORGET, NOOP, Plan, PlannedChange
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import FAILED, RUNNING
from jobrunner.reconcile.planning import destroy_changes
from jobrunner.reconcile.stopcontrol import StopControl
from jobrunner.reconcile.versions import VersionDeleteOrder, is_version_delete
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.resources import Resource
from jobrunner.state.model import AddressState, StateDoc
from tests.core.plan_helpers import apply_all, batch, deployment, training

ADDR = "Training/poems"
API = "Deployment/poems-api"
VERSION = f"me/poems:{'1' * 64}"
DELETING = {"on_remove": "delete_version"}


def _doc(tmp_path: Path, status: str = "succeeded", **spec: Any) -> StateDoc:
    return apply_all([training(**spec)], tmp_path, status=status)


def _destroy(doc: StateDoc, **resources: Resource) -> dict[str, PlannedChange]:
    return {c.address: c for c in destroy_changes(dict(doc.addresses), dict(resources))}


def test_destroy_deletes_the_trained_version_and_every_renderer_calls_it_destructive(tmp_path: Path) -> None:
    doc = _doc(tmp_path, lifecycle=DELETING)
    changes = _destroy(doc, **{ADDR: training(lifecycle=DELETING)})
    change = changes[ADDR]
    assert change.action == DELETE and change.policy.on_remove == "delete_version"
    assert change.reason == (f"lifecycle.on_remove is delete_version: its trained version {VERSION} is deleted, "
                             "then forgotten")
    plan = Plan(changes=list(changes.values()), state_lineage=doc.lineage, state_serial=doc.serial)
    text = plan_text.render(plan)
    assert f"  - {ADDR}  (delete: lifecycle.on_remove is delete_version" in text
    assert f"Destructive: This plan deletes 1 trained version on the provider: {ADDR}" in text
    assert "1 to delete" in text
    (shown,) = json.loads(plan_json.render(plan))["changes"]
    assert shown["action"] == "delete" and shown["destructive"] is True
    markdown = plan_markdown.render(plan)
    assert "**delete** (destructive)" in markdown
    assert f"This plan deletes 1 trained version on the provider: {ADDR}" in markdown


def test_with_the_manifest_gone_the_lifecycle_state_recorded_decides(tmp_path: Path) -> None:
    doc = _doc(tmp_path, lifecycle=DELETING)
    assert doc.addresses[ADDR].lifecycle == DELETING
    assert _destroy(doc)[ADDR].action == DELETE
    # The manifest, when read, wins over what state recorded: it no longer asks for the delete.
    assert _destroy(doc, **{ADDR: training()})[ADDR].action == FORGET


def test_without_a_version_to_delete_destroy_cancels_or_forgets_as_before(tmp_path: Path) -> None:
    assert _destroy(_doc(tmp_path))[ADDR].action == FORGET  # no lifecycle
    assert _destroy(_doc(tmp_path, status=RUNNING, lifecycle=DELETING))[ADDR].action == CANCEL
    assert _destroy(_doc(tmp_path, status=FAILED, lifecycle=DELETING))[ADDR].action == FORGET
    doc = _doc(tmp_path, lifecycle=DELETING)
    doc.addresses[ADDR].outputs = {}  # succeeded without recording a version: nothing to delete
    assert _destroy(doc)[ADDR].action == FORGET


def test_only_providers_with_the_capability_delete_versions(tmp_path: Path) -> None:
    assert adapter_for("replicate").capabilities.delete_versions
    assert adapter_for("local").capabilities.delete_versions
    assert not adapter_for("emissary").capabilities.delete_versions
    doc = _doc(tmp_path, lifecycle=DELETING)
    doc.addresses[ADDR].provider = "emissary"  # (validation refuses the word there; state may still say it)
    change = _destroy(doc)[ADDR]  # destroy deletes the Emissary job itself, as for any Emissary job
    assert change.action == CANCEL and change.reason == "the Emissary job is deleted, then forgotten"


def _served(tmp_path: Path) -> StateDoc:
    doc = apply_all([training(lifecycle=DELETING), deployment(provider="local")], tmp_path)
    doc.addresses[API].outputs = {"name": "me/poems-api", "version": "1" * 64}
    return doc


def test_target_of_a_version_a_kept_deployment_serves_is_refused(tmp_path: Path) -> None:
    doc = _served(tmp_path)
    with pytest.raises(PlanError) as refused:
        destroy_changes({ADDR: doc.addresses[ADDR]}, {}, doc.addresses)
    assert f"{ADDR} (served by {API})" in str(refused.value)
    assert "--target" in (refused.value.hint or "")
    both = {a: doc.addresses[a] for a in (ADDR, API)}
    assert {c.address: c.action for c in destroy_changes(both, {}, doc.addresses)} == {ADDR: DELETE, API: DELETE}


def _change(address: str, action: str, kind: str, removed: bool = True) -> PlannedChange:
    st = AddressState(address=address, kind=kind, job_kind=kind.lower().replace("predictionbatch", "prediction"),
                      provider="local", file="m.yaml", remote_id="r", status="succeeded")
    return PlannedChange(address=address, action=action, reason="", job=None, prior=st)  # type: ignore[arg-type]


def test_version_deletes_wait_for_deployments_and_removed_batches() -> None:
    version = _change(ADDR, DELETE, "Training")
    api = _change(API, DELETE, "Deployment")
    row = _change("PredictionBatch/eval[a]", FORGET, "PredictionBatch")
    other = _change("Training/other", NOOP, "Training")
    assert is_version_delete(version) and not is_version_delete(api)

    async def scenario() -> list[str]:
        order = VersionDeleteOrder([version, api, row, other])
        seen: list[str] = []

        async def delete_version() -> None:
            await order.wait(StopControl(None))
            seen.append(ADDR)

        task = asyncio.create_task(delete_version())
        await asyncio.sleep(0.01)
        for done in (other.address, api.address, row.address):  # the unrelated noop never held it
            assert not task.done()
            seen.append(done)
            order.finished(done)
            await asyncio.sleep(0.01)
        await task
        return seen

    assert asyncio.run(scenario()) == ["Training/other", API, "PredictionBatch/eval[a]", ADDR]


def test_a_plan_without_version_deletes_waits_for_nothing(tmp_path: Path) -> None:
    doc = apply_all([batch()], tmp_path)
    changes = destroy_changes(dict(doc.addresses), {})
    order = VersionDeleteOrder(changes)
    asyncio.run(asyncio.wait_for(order.wait(StopControl(None)), 1))
