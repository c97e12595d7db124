"""What a deployment's change does to what depends on it (pure plan, no mocks).

Terraform's rule: an in-place update keeps every attribute known except those the change affects.
A Replicate deployment updated in place keeps its name and URL, and the version it serves unless
`version` changed, so a batch evaluating it is unchanged when only its scaling changes and replaced
when a new version reaches it. A replace (and every Emissary change) makes every output unknown.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobrunner.deployment_changes import changed_fields, outputs_kept
from jobrunner.plan_types import NOOP, REPLACE, UPDATE
from jobrunner.resources import Resource
from jobrunner.spec import expand
from jobrunner.state.model import StateDoc
from tests.core.plan_helpers import actions, batch, deployment, emissary_deployment, plan_for, reasons, record, training

API = "Deployment/poems-api"
EVAL = "PredictionBatch/eval"
V1 = "1" * 64


def _eval(**spec: Any) -> Resource:
    res = batch(provider="replicate", deployment="${Deployment.poems-api.output.name}", **spec)
    return Resource(res.kind, res.name, {k: v for k, v in res.spec.items() if k != "version"}, res.file, res.line)


def _served(job: Any) -> dict[str, Any]:
    """The outputs apply records for a ready Replicate deployment (RemoteDeployment.outputs)."""
    name = f"me/{job.request['name']}"
    return {"id": name, "name": name, "url": f"https://api.replicate.com/v1/deployments/{name}",
            "version": job.request["version"]}


def _applied(resources: list[Resource], root: Path) -> StateDoc:
    """State after a successful apply: trainings made me/poems:<V1>, deployments serve their version."""
    doc = StateDoc(lineage="L")
    by_addr = {r.address: r for r in resources}
    for _ in range(3):
        for job in expand(resources, root, state=doc):
            if job.fingerprint is None:
                continue
            res = by_addr[job.resource_address]
            outputs = ({"version": f"me/poems:{V1}"} if res.kind == "Training"
                       else _served(job) if res.kind == "Deployment" else {})
            record(doc, job, res, outputs=outputs)
    return doc


def test_scaling_a_deployment_leaves_the_batch_on_it_unchanged(tmp_path: Path) -> None:
    doc = _applied([deployment(), _eval()], tmp_path)
    assert set(actions(plan_for([deployment(), _eval()], tmp_path, doc)).values()) == {NOOP}
    for change in ({"max_instances": 3}, {"min_instances": 1}, {"hardware": "gpu-t4"}):
        plan = plan_for([deployment(**change), _eval()], tmp_path, doc)
        assert actions(plan) == {API: UPDATE, f"{EVAL}[a]": NOOP, f"{EVAL}[b]": NOOP}, change
        assert all(c.fingerprint_after is not None for c in plan.changes)
    # The estimate covers the update only: nothing of the unchanged batch is priced.
    assert set(plan.estimate.changes if plan.estimate else ()) <= {API}


def test_the_update_keeps_the_name_and_url_and_the_version_it_serves(tmp_path: Path) -> None:
    doc = _applied([deployment()], tmp_path)
    prior = doc.addresses[API]
    (scaled,) = expand([deployment(max_instances=3)], tmp_path, state=doc)
    assert changed_fields(prior.inputs, scaled) == {"max_instances"}
    assert outputs_kept(prior, scaled) == prior.outputs  # every output survives a scale
    (moved,) = expand([deployment(version="2" * 64, max_instances=3)], tmp_path, state=doc)
    assert changed_fields(prior.inputs, moved) == {"version", "max_instances"}
    kept = outputs_kept(prior, moved)
    assert kept == {k: prior.outputs[k] for k in ("id", "name", "url")}  # the version is new
    (renamed,) = expand([deployment(model="me/verses")], tmp_path, state=doc)
    assert outputs_kept(prior, renamed) is None  # a replace: a new deployment, nothing known


def test_a_new_version_behind_the_deployment_replaces_the_batch(tmp_path: Path) -> None:
    doc = _applied([deployment(), _eval()], tmp_path)
    plan = plan_for([deployment(version="2" * 64), _eval()], tmp_path, doc)
    assert actions(plan) == {API: UPDATE, f"{EVAL}[a]": REPLACE, f"{EVAL}[b]": REPLACE}
    batch_change = next(c for c in plan.changes if c.address == f"{EVAL}[a]")
    # Only the version is unknown: the deployment's name is kept, and the reason says what waits.
    assert batch_change.fingerprint_after is None and not batch_change.blocked_by
    assert reasons(plan)[f"{EVAL}[a]"] == f"deployment_version known after apply (waits for {API})"
    assert batch_change.job is not None and batch_change.job.request["deployment"] == "me/poems-api"


def test_a_retrained_version_reaches_the_batch_through_the_deployment(tmp_path: Path) -> None:
    pipeline = [training(), deployment(model=None, version="${Training.poems.output.version}"), _eval()]
    doc = _applied(pipeline, tmp_path)
    assert set(actions(plan_for(pipeline, tmp_path, doc)).values()) == {NOOP}
    scaled = [pipeline[0], deployment(model=None, version="${Training.poems.output.version}", max_instances=2),
              pipeline[2]]
    assert actions(plan_for(scaled, tmp_path, doc)) == {"Training/poems": NOOP, API: UPDATE,
                                                        f"{EVAL}[a]": NOOP, f"{EVAL}[b]": NOOP}
    retrained = [training(input={"order": 5}), *scaled[1:]]
    assert actions(plan_for(retrained, tmp_path, doc)) == {"Training/poems": REPLACE, API: UPDATE,
                                                           f"{EVAL}[a]": REPLACE, f"{EVAL}[b]": REPLACE}


def test_a_reference_to_an_output_the_update_changes_waits_and_is_not_missing(tmp_path: Path) -> None:
    on_version = batch(provider="replicate", model="me/poems", version="${Deployment.poems-api.output.version}")
    doc = _applied([deployment(), on_version], tmp_path)
    plan = plan_for([deployment(version="2" * 64), on_version], tmp_path, doc)
    change = next(c for c in plan.changes if c.address == f"{EVAL}[a]")
    assert change.action == REPLACE and not change.blocked_by and not change.job.missing_outputs
    assert "will be skipped" not in change.reason


def test_a_replaced_deployment_makes_its_dependents_known_after_apply(tmp_path: Path) -> None:
    doc = _applied([deployment(), _eval()], tmp_path)
    plan = plan_for([deployment(model="me/verses"), _eval()], tmp_path, doc)
    assert actions(plan) == {API: REPLACE, f"{EVAL}[a]": REPLACE, f"{EVAL}[b]": REPLACE}
    forced = plan_for([deployment(max_instances=3), _eval()], tmp_path, doc, replace={API})
    assert actions(forced)[API] == REPLACE


def test_an_emissary_deployment_never_updates_so_nothing_is_kept(tmp_path: Path) -> None:
    doc = StateDoc(lineage="L")
    (job,) = expand([emissary_deployment()], tmp_path, state=doc)
    prior = record(doc, job, emissary_deployment(),
                   outputs={"id": "dp-1", "name": "chat", "url": "https://x/dp-1", "status": "Deployed"})
    (changed,) = expand([emissary_deployment(server_type="serverless")], tmp_path, state=doc)
    assert outputs_kept(prior, changed) is None
