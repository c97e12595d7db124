"""The plan as JSON, for machines (CI steps, saved-plan artifacts, dashboards).

`format_version` follows Terraform's rule: minor bumps only add fields, a major bump breaks.
Every change is listed, converged ones included (`"quiet": true`), with its action, reason,
fingerprints before/after (`after_unknown` when a reference is known only after apply), the remote
status the plan saw, and the inputs redacted exactly as in the other formats. A change of an address a
declared rename moved carries `moved_from` (its action is `moved`, or what else happens to it), and
`moves` lists every (from, to) pair. Every change that runs something carries its `estimate`
(duration, cost, hardware, each with its source; null numbers are unknown), and the plan's
`estimate` sums them per resource, per provider and in all, with the budget verdict.
"""
from __future__ import annotations

import json
from typing import Any

from jobrunner.plan_types import DESTRUCTIVE, Plan, PlannedChange
from jobrunner.redact import Secrets, known_secrets, redact, scrub_text
from jobrunner.render.formats import FORMAT_VERSION
from jobrunner.render.plan_common import redacted_request, resource_of
from jobrunner.render.plan_costs import change_json, plan_json


def change_dict(change: PlannedChange, *, secrets: Secrets | None = None, plan: Plan | None = None) -> dict[str, Any]:
    job, prior = change.job, change.prior
    secrets = known_secrets() if secrets is None else secrets
    return {
        "address": change.address,
        "resource": job.resource_address if job else resource_of(change.address),
        "action": change.action,
        "destructive": change.action in DESTRUCTIVE,
        "reason": scrub_text(change.reason, secrets=secrets),
        "quiet": change.quiet,
        "job_kind": job.job_kind if job else (prior.job_kind if prior else None),
        "provider": job.provider if job else (prior.provider if prior else None),
        "file": job.file if job else (prior.file if prior else None),
        "fingerprint": {
            "before": change.fingerprint_before,
            "after": change.fingerprint_after,
            "after_unknown": job is not None and change.fingerprint_after is None,
        },
        "remote_id": prior.remote_id if prior else None,
        "remote_status": change.remote_status,
        "adopt_remote_id": change.adopt_remote_id,
        "moved_from": change.moved_from,
        "attempts": prior.attempts if prior else 0,
        "depends_on": list(job.depends_on) if job else [],
        "blocked_by": list(change.blocked_by),
        "input": redacted_request(change, secrets=secrets),
        "input_diff": redact(change.input_diff, job.sensitive_paths if job else (), secrets=secrets)
        if change.input_diff else {},
        "estimate": change_json(plan.estimate, change.address) if plan is not None else None,
    }


def plan_dict(plan: Plan) -> dict[str, Any]:
    counts = plan.counts()
    secrets = known_secrets()
    return {
        "format_version": FORMAT_VERSION,
        "has_changes": plan.has_changes,
        "summary": counts,
        "paths": list(plan.paths),
        "manifests_digest": plan.manifests_digest,
        "state": {"lineage": plan.state_lineage, "serial": plan.state_serial},
        "warnings": [scrub_text(w, secrets=secrets) for w in plan.warnings],
        "moves": [{"from": old, "to": new} for old, new in plan.moves],
        "estimate": plan_json(plan.estimate),
        "changes": [change_dict(c, secrets=secrets, plan=plan) for c in plan.changes],
    }


def render(plan: Plan, *, indent: int | None = None) -> str:
    """Compact by default (one line, like `terraform show -json`: fast for 10,000-job plans);
    pass `indent=2` for a human-readable file."""
    return json.dumps(plan_dict(plan), indent=indent, ensure_ascii=False) + "\n"


__all__ = ["FORMAT_VERSION", "change_dict", "plan_dict", "render"]
