"""Builders shared by the plan and renderer tests: resources, and state as apply would record it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobrunner.plan import compute_plan, lifecycle_of
from jobrunner.plan_types import Plan
from jobrunner.providers.base import RemoteJob
from jobrunner.resources import DesiredJob, Resource
from jobrunner.spec import expand, recorded_inputs
from jobrunner.state.model import AddressState, Attempt, StateDoc

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
FILE = "specs/jobs.yaml"


def training(name: str = "poems", file: str = FILE, **spec: Any) -> Resource:
    base = {"provider": "local", "model": "jobrunner/ngram", "version": NGRAM, "destination": "me/poems",
            "input": {"order": 4}}
    base.update(spec)
    return Resource("Training", name, base, file, 1)


def batch(name: str = "eval", file: str = FILE, inputs: list[dict] | None = None, **spec: Any) -> Resource:
    base = {"provider": "local", "version": f"jobrunner/echo:{ECHO}",
            "inputs": inputs if inputs is not None else [{"key": "a", "prompt": "A"}, {"key": "b", "prompt": "B"}]}
    base.update(spec)
    return Resource("PredictionBatch", name, base, file, 20)


def model(name: str = "poems", file: str = FILE, **spec: Any) -> Resource:
    base = {"provider": "local", "owner": "me", "name": "poems", "visibility": "private", "hardware": "cpu"}
    base.update(spec)
    return Resource("Model", name, base, file, 40)


def record(doc: StateDoc, job: DesiredJob, resource: Resource, *, status: str = "succeeded", attempts: int = 1,
           remote_id: str | None = None, outputs: dict | None = None, error: str | None = None) -> AddressState:
    """Record `job` in `doc` the way apply does after creating it and observing `status`."""
    rid = remote_id or f"r-{job.address}"
    st = AddressState(
        address=job.address, kind=resource.kind, job_kind=job.job_kind, provider=job.provider, file=job.file,
        fingerprint=job.fingerprint, remote_id=rid, status=status, attempts=attempts,
        outputs=outputs or {}, error=error, inputs=recorded_inputs(job), lifecycle=lifecycle_of(resource),
        history=[Attempt(remote_id=rid, fingerprint=job.fingerprint or "", attempt=attempts,
                         created_at="2026-01-01T00:00:00+00:00", status=status)],
    )
    doc.addresses[job.address] = st
    return st


def apply_all(resources: list[Resource], root: Path, doc: StateDoc | None = None, **kw: Any) -> StateDoc:
    """State after a successful apply of `resources` (trainings output version me/poems:v1)."""
    doc = doc or StateDoc(lineage="L")
    by_addr = {r.address: r for r in resources}
    for _ in range(3):  # enough rounds for a two-level DAG to resolve
        for job in expand(resources, root, state=doc):
            if job.fingerprint is None:
                continue
            res = by_addr[job.resource_address]
            outputs = {"version": f"me/poems:{'1' * 64}"} if res.kind == "Training" else {}
            record(doc, job, res, outputs=outputs, **kw)
    return doc


def plan_for(resources: list[Resource], root: Path, doc: StateDoc, remote: dict[str, RemoteJob] | None = None,
             planned_files: set[str] | None = None, **kw: Any) -> Plan:
    desired = expand(resources, root, state=doc)
    files = planned_files if planned_files is not None else {r.file for r in resources} | {FILE}
    return compute_plan(desired, doc, remote or {}, planned_files=files, resources=resources, **kw)


def actions(plan: Plan) -> dict[str, str]:
    return {c.address: c.action for c in plan.changes}


def reasons(plan: Plan) -> dict[str, str]:
    return {c.address: c.reason for c in plan.changes}


def deployment(name: str = "poems-api", file: str = FILE, **spec: Any) -> Resource:
    base: dict[str, Any] = {"provider": "replicate", "model": "me/poems", "version": "1" * 64, "hardware": "cpu",
                            "min_instances": 0, "max_instances": 1}
    base.update(spec)
    return Resource("Deployment", name, base, file, 60)


def emissary_deployment(name: str = "chat", file: str = FILE, **spec: Any) -> Resource:
    base: dict[str, Any] = {"provider": "emissary", "project_id": "ms-12345", "training_job_id": "tr-12345",
                            "checkpoint": 4, "server_type": "on-demand"}
    base.update(spec)
    return Resource("Deployment", name, base, file, 70)
