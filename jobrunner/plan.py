"""The plan engine: desired jobs + state + what providers report -> the changes apply will make.

`compute_plan` is a pure function (no I/O, no clock): the same inputs always give the same plan,
which is what makes plans reviewable and saved plans checkable. The rules (DESIGN.md section 2):

- a new address is created; a job that succeeded with the same fingerprint is converged forever;
- a changed fingerprint replaces the job (the reconciler cancels a still-running old run first),
  unless `lifecycle.on_change: keep` and it already succeeded;
- a run that failed, aborted, was canceled or deleted (GONE) is retried while attempts remain
  (`retry.max_attempts`, default 1 = no retry); after that it is a noop saying how to run it again;
- an address gone from the manifests is cancelled if still running (`lifecycle.on_remove: keep`
  forgets it instead; `prevent_cancel: true` makes the plan an error), forgotten if terminal
  (a training that succeeded with `on_remove: delete_version` has its trained version deleted).
  Only addresses whose recorded file is among `planned_files` can be "gone": planning a subset of
  the manifests never touches the others;
- models are created once, kept, never updated or deleted;
- deployments are updated in place when every changed field is one their provider updates
  (`DeploymentForm.updatable`: Replicate's version, hardware, instances), else replaced (deleted,
  then created again); removed from the manifests they are deleted (destructive). A delete or a
  replace of a deployment whose `lifecycle.prevent_destroy` is true makes the plan an error;
- a pending write-ahead intent whose job the refresher found on the provider is adopted;
- an address in `replace` (`--replace`) is re-run on purpose even though it converged;
- a record a declared rename moved (`moved`, new address -> old; state already re-keyed by
  `jobrunner.moves`) is planned at its new address as usual; when that alone would be a noop or a
  wait, the change is `moved`, else it keeps its action (moved AND replaced) and says where it
  moved from. Never cancel + create.

How `remote` is filled (by the refresher): for an address with a tracked non-terminal job,
`remote[address]` is that job's current view (status GONE when the provider answers 404). For an
address whose state holds a pending `intent`, `remote[address]` is the remote job the refresher
matched to that intent, if any: a job whose id differs from the recorded `remote_id`. Addresses
with terminal jobs need no entry (terminal jobs are immutable).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace as dc_replace
from operator import attrgetter
from typing import Any

from jobrunner.deployment_changes import changed_fields, updatable_fields
from jobrunner.errors import PlanError, UsageError
from jobrunner.fingerprint import FILE_DIGEST, short
from jobrunner.plan_types import (
    ADOPT,
    CANCEL,
    CREATE,
    DELETE,
    FORGET,
    MOVED,
    NOOP,
    REPLACE,
    RETRY,
    UPDATE,
    WAIT,
    Action,
    Plan,
    PlannedChange,
    Policy,
)
from jobrunner.providers.base import (
    ABORTED,
    CANCELED,
    FAILED,
    GONE,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    UNKNOWN,
    RemoteJob,
)
from jobrunner.redact import Secrets, known_secrets, redact
from jobrunner.references import missing_outputs_text
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, DesiredJob, Resource
from jobrunner.state.model import AddressState, StateDoc

RETRYABLE = frozenset({FAILED, ABORTED, CANCELED, GONE})
_MAX_REASON_KEYS = 3


def lifecycle_of(resource: Resource) -> dict[str, Any]:
    """What the reconciler records in `AddressState.lifecycle` for this resource's addresses."""
    return dict(resource.spec.get("lifecycle") or {})


def compute_plan(
    desired: list[DesiredJob],
    state: StateDoc,
    remote: Mapping[str, RemoteJob],
    *,
    planned_files: set[str],
    resources: list[Resource],
    replace: Iterable[str] = (),
    paths: list[str] | None = None,
    manifests_digest: str = "",
    moved: Mapping[str, str] | None = None,
) -> Plan:
    """The plan; see the module docstring. Raises PlanError when a removal would cancel a
    job protected by `lifecycle.prevent_cancel` (every such address is listed)."""
    secrets = known_secrets()  # read the environment once, not once per job
    policies = {r.address: Policy.of(r.spec) for r in resources}
    forced = set(replace)
    rank = _ranks(desired)
    desired_addrs = {j.address for j in desired}
    changes: list[PlannedChange] = []
    # resource address -> why its dependents will be skipped (failed for good)
    failed_for_good: dict[str, str] = {}
    # resource addresses with a job about to (re)run: dependents' values are known after apply
    rerunning: set[str] = set()
    destroyed: list[str] = []  # deployments a change would delete despite lifecycle.prevent_destroy

    ordered = _in_order(desired, rank)
    for job in ordered:
        prior = state.addresses.get(job.address)
        policy = policies.get(job.resource_address) or Policy.of(None, prior.lifecycle if prior else None)
        seen = remote.get(job.address)
        if prior is not None and seen is None and not job.depends_on and _settled(job, prior, forced):
            changes.append(_as_moved(_succeeded(job, prior, policy), moved))  # most of a re-planned batch
            continue
        if job.job_kind == JOB_MODEL:
            change = _plan_model(job, prior, secrets)
        elif job.job_kind == JOB_DEPLOYMENT:
            change = _plan_deployment(job, prior, seen, forced=job.address in forced, secrets=secrets)
            if change.action == REPLACE and policy.prevent_destroy:
                destroyed.append(job.address)
        else:
            change = _plan_job(job, prior, seen, policy, job.address in forced, rerunning, secrets)
        blockers = tuple(d for d in job.depends_on if d in failed_for_good)
        if blockers and change.action in (CREATE, REPLACE, RETRY):
            why = "; ".join(f"{b} {failed_for_good[b]}" for b in blockers)
            change = dc_replace(change, blocked_by=blockers, reason=f"{change.reason}; will be skipped: {why}")
        elif job.missing_outputs and change.action in (CREATE, REPLACE, RETRY):
            # Its upstream succeeded without an output it references: waiting never helps.
            change = dc_replace(change, blocked_by=tuple(sorted({a for a, _ in job.missing_outputs})),
                                reason="will be skipped: " + missing_outputs_text(job.missing_outputs))
        if change.action in (CREATE, UPDATE, REPLACE, RETRY, ADOPT, WAIT):
            rerunning.add(job.resource_address)
        if change.action == NOOP and change.remote_status in RETRYABLE and job.job_kind != JOB_MODEL:
            failed_for_good[job.resource_address] = f"ended {change.remote_status}"
        if blockers and change.action == NOOP:
            failed_for_good.setdefault(job.resource_address, "is skipped")
        changes.append(_as_moved(_with_policy(change, policy), moved))

    removed, protected = _removals(state, desired_addrs, planned_files, policies, remote, moved, destroyed)
    if destroyed:
        raise PlanError(
            "this plan would delete deployments whose lifecycle.prevent_destroy is true:\n"
            + "\n".join(f"  {a}" for a in destroyed),
            hint="put the manifests back (or undo the change that replaces them), or set prevent_destroy: false "
                 "and apply that first",
        )
    if protected:
        raise PlanError(
            "removing these from the manifests would cancel their running jobs, but their "
            "lifecycle.prevent_cancel is true:\n" + "\n".join(f"  {a}" for a in protected),
            hint=(
                "put the manifests back and wait until the jobs end, or set prevent_cancel: false and "
                "apply that before removing them"
            ),
        )
    return Plan(
        changes=changes + removed,
        paths=list(paths or []),
        manifests_digest=manifests_digest,
        state_lineage=state.lineage,
        state_serial=state.serial,
    )


def _removals(state: StateDoc, desired_addrs: set[str], planned_files: set[str], policies: dict[str, Policy],
              remote: Mapping[str, RemoteJob], moved: Mapping[str, str] | None,
              destroyed: list[str]) -> tuple[list[PlannedChange], list[str]]:
    """(changes of the addresses no manifest defines any more, those prevent_cancel refuses);
    deployments a removal would delete despite prevent_destroy are added to `destroyed`."""
    removed: list[PlannedChange] = []
    protected: list[str] = []
    # Only the addresses not desired are sorted: a re-planned batch of 100,000 has none.
    for address in sorted(a for a in state.addresses if a not in desired_addrs):
        prior = state.addresses[address]
        if prior.file not in planned_files:
            continue  # defined (or not) in manifests this plan did not read: not ours to judge
        resource_address = address.split("[", 1)[0]
        policy = policies.get(resource_address) or Policy.of(None, prior.lifecycle)
        gone: PlannedChange | None
        if prior.job_kind == JOB_DEPLOYMENT:
            gone = _plan_deployment_removed(prior, remote.get(address))
            if gone.action == DELETE and policy.prevent_destroy:
                destroyed.append(address)
        else:
            gone = _plan_removed(prior, remote.get(address), policy)
        if gone is None:
            protected.append(address)
            continue
        removed.append(_as_moved(_with_policy(gone, policy), moved))
    return removed, protected


def _settled(job: DesiredJob, prior: AddressState, forced: set[str]) -> bool:
    """A job or batch item whose spec is unchanged and whose run succeeded, with nothing seen on
    the provider since (the caller checks that): `_plan_job` would plan it as the quiet noop
    `_succeeded` makes. Most of a re-planned batch; tested first, it skips the general path."""
    return (prior.status == SUCCEEDED and prior.intent is None and bool(prior.remote_id)
            and job.fingerprint is not None and job.fingerprint == prior.fingerprint
            and (job.job_kind == JOB_PREDICTION or job.job_kind == JOB_TRAINING) and job.address not in forced)


def _succeeded(job: DesiredJob, prior: AddressState, policy: Policy) -> PlannedChange:
    """The change `_plan_job` plans for a `_settled` job, its policy set."""
    return PlannedChange(job.address, NOOP, "succeeded", job, prior, prior.fingerprint, job.fingerprint,
                         remote_status=prior.status, quiet=True, policy=policy)


def _with_policy(change: PlannedChange, policy: Policy) -> PlannedChange:
    """`change` with its policy set. Every change is built fresh by the functions below and seen by
    no one yet, so it is completed in place: `dataclasses.replace` would copy each of a big
    batch's changes once more (a tenth of a 100,000-item plan's CPU)."""
    object.__setattr__(change, "policy", policy)
    return change


# --- one address ----------------------------------------------------------------------------


def _plan_model(job: DesiredJob, prior: AddressState | None, secrets: Secrets) -> PlannedChange:
    exists = prior is not None and (prior.status == SUCCEEDED or bool(prior.remote_id))
    if not exists:
        return PlannedChange(
            job.address, CREATE, "new model; adopted instead if it already exists on the provider",
            job, prior, prior.fingerprint if prior else None, job.fingerprint,
            input_diff=input_diff(None, job, secrets=secrets),
        )
    assert prior is not None
    if prior.fingerprint and job.fingerprint and prior.fingerprint != job.fingerprint:
        diff = input_diff(prior.inputs, job, secrets=secrets)
        what = _changed_keys(diff) or "settings"
        return PlannedChange(
            job.address, NOOP,
            f"{what} changed; jobrunner never updates existing models: change it on the provider",
            job, prior, prior.fingerprint, job.fingerprint, input_diff=diff,
        )
    return PlannedChange(job.address, NOOP, "model exists", job, prior, prior.fingerprint, job.fingerprint,
                         quiet=True)


def _plan_deployment(job: DesiredJob, prior: AddressState | None, seen: RemoteJob | None, *, forced: bool,
                     secrets: Secrets) -> PlannedChange:
    """Create, update in place, replace, wait or noop for one deployment (see the module docstring)."""
    fp = job.fingerprint
    if prior is None or not prior.remote_id or (
            prior.intent is not None and seen is not None and seen.id != prior.remote_id):
        # New, never created, or an interrupted create to adopt: exactly as for a job.
        first = _plan_job(job, prior, seen, Policy(), forced, set(), secrets)
        reason = first.reason.replace("new job", "new deployment", 1).replace(
            "an interrupted create was not found on the provider",
            "an interrupted create is looked up by name before anything is created", 1)
        return dc_replace(first, reason=reason)
    status, drift = _observed(prior, seen)
    remote_status = seen.status if seen is not None else prior.status
    diff = input_diff(prior.inputs, job, secrets=secrets)

    def make(action: Action, reason: str, *, quiet: bool = False) -> PlannedChange:
        return PlannedChange(job.address, action, reason, job, prior, prior.fingerprint if prior else None, fp,
                             remote_status=remote_status, input_diff=diff, quiet=quiet)

    if status == GONE:
        return make(CREATE, f"{prior.remote_id} was deleted outside jobrunner (the provider answers 404); "
                            "it is created again")
    if forced:
        return make(REPLACE, "replace requested: deleted, then created again")
    if fp is not None and fp == prior.fingerprint:
        drifted = _drifted_settings(job, seen)
        if status == SUCCEEDED and drifted:
            diff = drifted
            what = "; ".join(f"{k} was changed outside jobrunner ({_show(a)} -> {_show(b)})"
                             for k, (a, b) in drifted.items())
            fixed = sorted(set(drifted) - updatable_fields(job))
            if not fixed:
                return make(UPDATE, f"{what}: updated back in place")
            return make(REPLACE, f"{what}; {', '.join(fixed)} cannot change in place: deleted, then created again")
        if status == SUCCEEDED:
            return make(NOOP, "ready", quiet=True)
        if status in RETRYABLE:
            return make(NOOP, f"{drift or _ended(status or FAILED, prior)}: change the manifest or run "
                                f"`jobrunner apply --replace {job.address}` to deploy it again")
        return make(WAIT, f"{status or PENDING} ({prior.remote_id})")
    # The same fields expansion judged (deployment_changes.outputs_kept): an update here is the
    # update whose kept outputs its dependents were planned with.
    keys = changed_fields(prior.inputs, job, secrets=secrets)
    what = _unknown_fields(job) + " known after apply" if fp is None else _changed_keys(diff) + " changed"
    fixed = sorted(keys - updatable_fields(job))
    if not fixed and status not in RETRYABLE:
        return make(UPDATE, f"{what}: updated in place")
    why = (f"{', '.join(fixed)} cannot change in place" if fixed
           else f"{prior.remote_id} ended {status}")
    return make(REPLACE, f"{what}; {why}: deleted, then created again")


def _drifted_settings(job: DesiredJob, seen: RemoteJob | None) -> dict[str, list[Any]]:
    """`{field: [on the provider, in the manifest]}` for declared fields the provider echoes
    differently: a deployment scaled or re-pointed outside jobrunner."""
    settings = seen.extra.get("settings") if seen is not None else None
    if not isinstance(settings, dict):
        return {}
    material = _without_kind(job.material or {})
    return {k: [settings[k], v] for k, v in sorted(material.items()) if k in settings and settings[k] != v}


def _plan_deployment_removed(prior: AddressState, seen: RemoteJob | None) -> PlannedChange:
    """Delete a deployment no manifest defines any more (forget it when there is nothing to delete)."""
    address = prior.address
    candidate = seen if (prior.intent is not None and seen is not None and seen.id != prior.remote_id) else None
    target = candidate.id if candidate is not None else prior.remote_id
    if not target:
        return PlannedChange(address, FORGET, "removed from the manifests (never created)", None, prior,
                             prior.fingerprint, None, remote_status=prior.status)
    status = _observed(prior, seen)[0] if candidate is None else candidate.status
    if status == GONE:
        return PlannedChange(address, FORGET, f"removed from the manifests ({target} is already gone)",
                             None, prior, prior.fingerprint, None, remote_status=status)
    return PlannedChange(address, DELETE, f"removed from the manifests: {target} is deleted on the provider",
                         None, prior, prior.fingerprint, None, remote_status=status,
                         adopt_remote_id=candidate.id if candidate is not None else None)


def _plan_job(
    job: DesiredJob,
    prior: AddressState | None,
    seen: RemoteJob | None,
    policy: Policy,
    forced: bool,
    rerunning: set[str],
    secrets: Secrets,
) -> PlannedChange:
    fp = job.fingerprint
    waits_for = [d for d in job.depends_on if d in rerunning]
    unknown_note = ""
    if fp is None:
        ups = ", ".join(waits_for or job.depends_on) or "an upstream job"
        unknown_note = f"{_unknown_fields(job)} known after apply (waits for {ups})"

    if prior is None:
        reason = "new job" if "[" not in job.address else "new batch item"
        return PlannedChange(job.address, CREATE, _join(reason, unknown_note), job, None, None, fp,
                             input_diff=input_diff(None, job, secrets=secrets))

    # A create that was in flight when the last run stopped.
    if prior.intent is not None and seen is not None and seen.id != prior.remote_id:
        if fp is not None and prior.intent.fingerprint == fp:
            return PlannedChange(
                job.address, ADOPT,
                f"an interrupted create did reach the provider: adopting {seen.id} ({seen.status})",
                job, prior, prior.fingerprint, fp, remote_status=seen.status, adopt_remote_id=seen.id,
            )
        return PlannedChange(
            job.address, REPLACE,
            f"an interrupted create for an older spec reached the provider ({seen.id}); it is recorded, "
            "then replaced",
            job, prior, prior.intent.fingerprint, fp, remote_status=seen.status, adopt_remote_id=seen.id,
            input_diff=input_diff(prior.inputs, job, secrets=secrets),
        )

    status, drift = _observed(prior, seen)
    remote_status = seen.status if seen is not None else prior.status

    if not prior.remote_id:
        why = ("an interrupted create was not found on the provider" if prior.intent is not None
               else "not created yet")
        return PlannedChange(job.address, CREATE, _join(why, unknown_note), job, prior, prior.fingerprint, fp,
                             remote_status=remote_status, input_diff=input_diff(prior.inputs, job, secrets=secrets))

    changed = fp is None or fp != prior.fingerprint
    if forced:
        return PlannedChange(job.address, REPLACE, _join("replace requested", _running_note(status, prior, policy)),
                             job, prior, prior.fingerprint, fp, remote_status=remote_status,
                             input_diff=input_diff(prior.inputs, job, secrets=secrets))
    if changed:
        diff = input_diff(prior.inputs, job, secrets=secrets)
        what = unknown_note if fp is None else (_changed_keys(diff, prior.inputs is not None) + " changed")
        if policy.on_change == "keep" and status == SUCCEEDED:
            return PlannedChange(
                job.address, NOOP, f"{what}, but lifecycle.on_change is keep: the succeeded run stands",
                job, prior, prior.fingerprint, fp, remote_status=remote_status, input_diff=diff,
            )
        return PlannedChange(job.address, REPLACE, _join(what, _running_note(status, prior, policy)), job, prior,
                             prior.fingerprint, fp, remote_status=remote_status, input_diff=diff)

    # Unchanged spec.
    if status == SUCCEEDED:
        return PlannedChange(job.address, NOOP, "succeeded", job, prior, prior.fingerprint, fp,
                             remote_status=remote_status, quiet=True)
    if status in RETRYABLE:
        what = drift or _ended(status, prior)
        attempts = max(prior.attempts, 1)
        if attempts < policy.max_attempts:
            return PlannedChange(
                job.address, RETRY, f"{what}; attempt {attempts + 1} of {policy.max_attempts}",
                job, prior, prior.fingerprint, fp, remote_status=remote_status,
            )
        plural = "s" if attempts != 1 else ""
        return PlannedChange(
            job.address, NOOP,
            f"{what}; no attempts left ({attempts} attempt{plural} of retry.max_attempts={policy.max_attempts}): "
            "change the manifest or raise spec.retry.max_attempts to run it again",
            job, prior, prior.fingerprint, fp, remote_status=remote_status,
        )
    # pending / running / unknown
    if status == UNKNOWN:
        raw = seen.raw_status if seen is not None and seen.raw_status else "?"
        return PlannedChange(job.address, WAIT, f"provider reports status {raw!r}, not understood; waiting",
                             job, prior, prior.fingerprint, fp, remote_status=remote_status)
    return PlannedChange(job.address, WAIT, f"{status or PENDING} ({prior.remote_id})", job, prior,
                         prior.fingerprint, fp, remote_status=remote_status)


def _as_moved(change: PlannedChange, moved: Mapping[str, str] | None) -> PlannedChange:
    """The change of an address a declared rename moved: `moved` when nothing else happens to it."""
    old = (moved or {}).get(change.address)
    if old is None:
        return change
    if change.action in (NOOP, WAIT):
        # Converged or still running: only state changes. A noop that needs attention keeps its reason.
        what = "" if change.quiet else change.reason
        if change.action == WAIT and change.reason.startswith((PENDING, RUNNING)):
            what = f"still {change.reason}"
        return dc_replace(change, action=MOVED, reason=_join(f"moved from {old}", what), quiet=False, moved_from=old)
    if change.action in (CREATE, REPLACE):
        return dc_replace(change, reason=f"moved from {old}, and {change.action}d: {change.reason}", moved_from=old)
    # retry / adopt / cancel / forget: renderers name the action before the reason.
    return dc_replace(change, reason=f"moved from {old}; {change.reason}", moved_from=old)


def _plan_removed(prior: AddressState, seen: RemoteJob | None, policy: Policy) -> PlannedChange | None:
    """The change for an address no manifest defines any more; None = refused by prevent_cancel."""
    address = prior.address
    if prior.job_kind == JOB_MODEL:
        return PlannedChange(address, FORGET, "removed from the manifests; models are kept on the provider",
                             None, prior, prior.fingerprint, None, remote_status=prior.status)
    candidate = seen if (prior.intent is not None and seen is not None and seen.id != prior.remote_id) else None
    if candidate is not None:
        if candidate.terminal:
            return PlannedChange(address, FORGET, f"removed from the manifests (interrupted create {candidate.id} "
                                 f"already {candidate.status})", None, prior, prior.fingerprint, None,
                                 remote_status=candidate.status, adopt_remote_id=candidate.id)
        return _cancel_or_keep(prior, policy, candidate.id, candidate.status, adopt=candidate.id)
    if not prior.remote_id:
        return PlannedChange(address, FORGET, "removed from the manifests (never created)", None, prior,
                             prior.fingerprint, None, remote_status=prior.status)
    status, drift = _observed(prior, seen)
    remote_status = seen.status if seen is not None else prior.status
    trained = prior.outputs.get("version") if prior.job_kind == JOB_TRAINING else None
    if status == SUCCEEDED and policy.on_remove == "delete_version" and isinstance(trained, str):
        return PlannedChange(address, DELETE, f"removed from the manifests; lifecycle.on_remove is delete_version: "
                             f"its trained version {trained} is deleted", None, prior, prior.fingerprint, None,
                             remote_status=remote_status)
    if status in TERMINAL:
        what = drift or f"last run {status}"
        return PlannedChange(address, FORGET, f"removed from the manifests ({what})", None, prior,
                             prior.fingerprint, None, remote_status=remote_status)
    return _cancel_or_keep(prior, policy, prior.remote_id, remote_status)


def _cancel_or_keep(prior: AddressState, policy: Policy, remote_id: str, status: str | None,
                    adopt: str | None = None) -> PlannedChange | None:
    if policy.on_remove == "keep":
        return PlannedChange(
            prior.address, FORGET,
            f"removed from the manifests; lifecycle.on_remove is keep: {remote_id} is left {status or 'running'}",
            None, prior, prior.fingerprint, None, remote_status=status, adopt_remote_id=adopt,
        )
    if policy.prevent_cancel:
        return None
    return PlannedChange(prior.address, CANCEL, f"removed from the manifests; {remote_id} is still "
                         f"{status or 'running'}", None, prior, prior.fingerprint, None, remote_status=status,
                         adopt_remote_id=adopt)


# --- wording and diffs -------------------------------------------------------------------------


def _observed(prior: AddressState, seen: RemoteJob | None) -> tuple[str | None, str]:
    """(status now, drift sentence) where drift explains a change made outside jobrunner."""
    if seen is None or (prior.remote_id and seen.id != prior.remote_id):
        return prior.status, ""
    status = seen.status
    if prior.status not in TERMINAL and status in (CANCELED, GONE, ABORTED):
        return status, {
            CANCELED: f"{seen.id} was canceled outside jobrunner",
            GONE: f"{seen.id} was deleted outside jobrunner (the provider answers 404)",
            ABORTED: f"{seen.id} was aborted by the provider before it started",
        }[status]
    return status, ""


def _ended(status: str, prior: AddressState) -> str:
    rid = prior.remote_id or "the last run"
    if status == FAILED:
        err = f": {_one_line(prior.error)}" if prior.error else ""
        return f"{rid} failed{err}"
    if status == GONE:
        return f"{rid} no longer exists on the provider"
    return f"{rid} was {status}"


def _unknown_fields(job: DesiredJob) -> str:
    """Which fields hold references not resolved yet: "version", "input.prompt and input.seed"."""
    keys = [k for k, v in flatten(_without_kind(job.material or {})).items() if isinstance(v, str) and "${" in v]
    if not keys:
        return "inputs"
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


def _running_note(status: str | None, prior: AddressState, policy: Policy) -> str:
    """What a replace does to the run it supersedes while that run is still going."""
    if status in (PENDING, RUNNING, UNKNOWN, None):
        if policy.prevent_cancel:  # the executor never cancels a protected run: say so
            return f"the running {prior.remote_id} is left running (lifecycle.prevent_cancel)"
        return f"the running {prior.remote_id} is canceled first"
    return ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _changed_keys(diff: Mapping[str, Any], have_prior: bool = True) -> str:
    if not have_prior:
        return "spec"
    if not diff:
        return "a sensitive value or file"
    keys = list(diff)
    if len(keys) == 1:
        before, after = _around_difference(*diff[keys[0]])
        return f"{keys[0]} ({_show(before)} -> {_show(after)})"
    shown = ", ".join(keys[:_MAX_REASON_KEYS])
    more = f" and {len(keys) - _MAX_REASON_KEYS} more" if len(keys) > _MAX_REASON_KEYS else ""
    return f"{shown}{more}"


def _around_difference(before: Any, after: Any, context: int = 10) -> tuple[Any, Any]:
    """Two long strings that share a long prefix, cut to start shortly before they differ."""
    if not (isinstance(before, str) and isinstance(after, str)):
        return before, after
    i = next((n for n, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), min(len(before), len(after)))
    if i <= context + 5:
        return before, after
    return "…" + before[i - context:], "…" + after[i - context:]


def _show(value: Any, limit: int = 40) -> str:
    if value is None or value is _ABSENT:
        return "(none)"
    if isinstance(value, str) and value.startswith("file sha256:"):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT: Any = _Absent()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of JSON-like data; a file digest is one leaf shown as "file sha256:<12 hex>"."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        if set(value) == {FILE_DIGEST}:
            out[prefix] = f"file sha256:{short(str(value[FILE_DIGEST]))}"
            return out
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    out[prefix] = value
    return out


def input_diff(before: Mapping[str, Any] | None, job: DesiredJob, *, secrets: Secrets | None = None
               ) -> dict[str, list[Any]]:
    """Redacted `{key: [before, after]}` between what state recorded and the job's material.

    Keys are dotted (`input.order`, `version`); `before` is None for a new job. Values that are
    redacted on both sides never show as changed.
    """
    secrets = known_secrets() if secrets is None else secrets
    # Whole values, as state records them (spec.recorded_inputs): a string holding a secret is
    # "(sensitive)" on both sides, never a change.
    after = flatten(redact(_without_kind(job.material or {}), job.sensitive_paths, secrets=secrets, whole_values=True))
    if before is None:
        return {k: [None, v] for k, v in sorted(after.items())}
    prev = flatten(redact(_without_kind(dict(before)), job.sensitive_paths, secrets=secrets, whole_values=True))
    out: dict[str, list[Any]] = {}
    for key in sorted(set(prev) | set(after)):
        a, b = prev.get(key, _ABSENT), after.get(key, _ABSENT)
        if b is _ABSENT and job.fingerprint is None:
            continue  # derived from a reference not known yet (e.g. model, from owner/name:id)
        if a != b:
            out[key] = [None if a is _ABSENT else a, None if b is _ABSENT else b]
    return out


def _without_kind(material: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in material.items() if k not in ("kind", "provider")}


# --- ordering and targeting ---------------------------------------------------------------------


def _in_order(desired: list[DesiredJob], rank: dict[str, int]) -> list[DesiredJob]:
    """The jobs by rank (`_ranks` of these jobs: it ranks each one's resource), then address.
    With every rank the same (no references: the usual big batch), that is the order by address
    alone, sorted without a key tuple per job."""
    if len(set(rank.values())) <= 1:
        return sorted(desired, key=attrgetter("address"))
    return sorted(desired, key=lambda j: (rank.get(j.resource_address, 0), j.address))


def _ranks(desired: Iterable[DesiredJob]) -> dict[str, int]:
    """Depth of each resource in the reference DAG (0 = no dependencies)."""
    deps: dict[str, set[str]] = {}
    for job in desired:
        ups = deps.get(job.resource_address)
        if ups is None:
            ups = deps[job.resource_address] = set()  # once per resource, not once per batch item
        if job.depends_on:
            ups.update(job.depends_on)
    rank: dict[str, int] = {}

    def depth(addr: str, trail: frozenset[str]) -> int:
        if addr in rank:
            return rank[addr]
        if addr in trail:  # cycles are validation errors; never loop here
            return 0
        ups = [d for d in deps.get(addr, ()) if d in deps]
        rank[addr] = 1 + max((depth(u, trail | {addr}) for u in ups), default=-1)
        return rank[addr]

    for addr in sorted(deps):
        depth(addr, frozenset())
    return rank


def expand_replace(requested: Iterable[str], desired: Iterable[DesiredJob]) -> set[str]:
    """The job addresses `--replace ADDR` names: an address, or every item of a batch.

    Raises UsageError for an address no manifest defines (like `--target`), or a Model.
    """
    requested = list(requested)
    if not requested:
        return set()  # the usual plan: nothing to index
    jobs = list(desired)
    by_resource: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for j in jobs:
        by_resource.setdefault(j.resource_address, []).append(j.address)
        kinds[j.address] = kinds[j.resource_address] = j.job_kind
    out: set[str] = set()
    missing, models = [], []
    for addr in requested:
        if kinds.get(addr) == JOB_MODEL:
            models.append(addr)
            continue
        hit = [addr] if addr in kinds and addr not in by_resource else by_resource.get(addr, [])
        if not hit:
            missing.append(addr)
        out.update(hit)
    if models:
        raise UsageError(f"--replace {', '.join(models)}: models are created once and never replaced",
                         hint="--replace names Training/name, PredictionBatch/name or PredictionBatch/name[key]")
    if missing:
        raise UsageError(
            f"--replace {', '.join(missing)}: no such address in the manifests",
            hint="addresses look like Training/name, PredictionBatch/name or PredictionBatch/name[key]; "
            "see `jobrunner plan` or `jobrunner state list`",
        )
    return out


def filter_plan(plan: Plan, targets: Iterable[str]) -> Plan:
    """Only the changes for `targets` (addresses or resource addresses) and what they depend on.

    Raises UsageError naming any target that matches nothing in the plan.
    """
    targets = list(targets)
    by_resource: dict[str, list[PlannedChange]] = {}
    for c in plan.changes:
        by_resource.setdefault(c.address.split("[", 1)[0], []).append(c)
    keep: set[str] = set()
    missing = []
    for t in targets:
        hit = [c.address for c in plan.changes if c.address == t] or [c.address for c in by_resource.get(t, [])]
        if not hit:
            missing.append(t)
        keep.update(hit)
    if missing:
        raise UsageError(
            f"--target {', '.join(missing)}: no such address in this plan",
            hint="addresses look like Training/name, PredictionBatch/name or PredictionBatch/name[key]; "
            "see `jobrunner plan` or `jobrunner state list`",
        )
    by_address = {c.address: c for c in plan.changes}
    queue = list(keep)
    while queue:
        c = by_address[queue.pop()]
        for dep in c.job.depends_on if c.job else ():
            for d in by_resource.get(dep, []):
                if d.address not in keep:
                    keep.add(d.address)
                    queue.append(d.address)
    # A move re-keys state for the whole apply: like Terraform, targeting may not leave one out.
    outside = [f"{c.moved_from} -> {c.address}" for c in plan.changes if c.moved_from and c.address not in keep]
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise UsageError(
            f"--target leaves out addresses the moved list of jobrunner.yaml moves: {shown}",
            hint="apply without --target first (the moves change nothing on the provider), or add --target for them",
        )
    return dc_replace(plan, changes=[c for c in plan.changes if c.address in keep])


__all__ = ["Policy", "compute_plan", "expand_replace", "filter_plan", "flatten", "input_diff", "lifecycle_of"]
