"""What a change to a `Deployment` manifest touches: the one rule spec expansion and the plan share.

A deployment is updated in place when every field that changed is one its provider updates
(`DeploymentForm.updatable`), else replaced; an update in place keeps the outputs it cannot change
(`DeploymentForm.update_keeps`: a Replicate deployment keeps its name and URL, and the version it
serves unless `version` changed). Expansion (`spec.expand`) uses that to keep a dependent's
references to those outputs known, so scaling a deployment does not re-run the paid evaluation
behind it; the plan (`plan._plan_deployment`) uses the same changed fields to choose update or
replace. One function for both, so a plan never shows an update whose dependents assumed a replace.

Pure: no I/O, provider specifics come from the adapter table.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobrunner.providers.adapters import find_adapter
from jobrunner.providers.base import SUCCEEDED
from jobrunner.redact import Secrets, known_secrets, redact
from jobrunner.resources import DesiredJob
from jobrunner.state.model import AddressState

# Material keys that say what the unit is, never a field of the provider's request.
_HEAD = ("kind", "provider")
_ABSENT: Any = object()


def _fields(material: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (material or {}).items() if k not in _HEAD}


def _has_ref(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_has_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    return False


def changed_fields(before: Mapping[str, Any] | None, job: DesiredJob, *,
                   secrets: Secrets | None = None) -> frozenset[str]:
    """The deployment's fields whose manifest value differs from what state recorded (`before`,
    the redacted material of the last create or update), or still holds a `${...}` reference.

    Values are compared redacted, as state records them: a secret is never a change. A field
    absent from a job whose references are not all known is not a change (it is derived from one,
    e.g. `model` from a `version` of the form owner/name:id).
    """
    secrets = known_secrets() if secrets is None else secrets
    after = _fields(job.material)
    now = redact(after, job.sensitive_paths, secrets=secrets, whole_values=True)
    prev = redact(_fields(before), job.sensitive_paths, secrets=secrets, whole_values=True)
    out = {k for k, v in after.items() if _has_ref(v)}
    for key in set(prev) | set(now):
        if key not in now and job.fingerprint is None:
            continue
        if prev.get(key, _ABSENT) != now.get(key, _ABSENT):
            out.add(key)
    return frozenset(out)


def updatable_fields(job: DesiredJob) -> frozenset[str]:
    """The fields the deployment's provider changes in place (none for an unknown provider)."""
    adapter = find_adapter(job.provider)
    form = adapter.deployment if adapter is not None else None
    return form.updatable if form is not None else frozenset()


def outputs_kept(prior: AddressState | None, job: DesiredJob) -> dict[str, Any] | None:
    """The outputs of the ready deployment `prior` that stay true when the plan changes it to
    `job` in place; None when they are all known only after apply (a replace, a create, or a
    deployment that is not serving)."""
    adapter = find_adapter(job.provider)
    form = adapter.deployment if adapter is not None else None
    if form is None or prior is None or not prior.remote_id or prior.intent is not None or prior.status != SUCCEEDED:
        return None
    return form.outputs_after_update(changed_fields(prior.inputs, job), prior.outputs or {})


__all__ = ["changed_fields", "outputs_kept", "updatable_fields"]
