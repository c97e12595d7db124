"""Saved plans (`plan --out plan.json`) and their scoped staleness check (`apply plan.json`).

A saved plan is what reviewers approved on a pull request; applying it later must do exactly what
it showed, or nothing. Deciding "has the world moved?" from a global counter (the state serial, a
digest of every manifest) makes plans go stale for no reason: any unrelated apply, any edit of
another manifest. So a saved plan records, for each address it *touches* (create, replace, retry,
cancel, forget, adopt), what it saw and what it decided:

- the action, the desired fingerprint and the spec digest of its resource (what was reviewed),
- the remote status and remote id state recorded (what the world looked like),
- the address it moves from, for a declared rename (`moved`),

and `apply plan.json` re-plans, then compares only those. Everything else is out of scope:

- an address the saved plan left alone (noop/wait) that now has a change is not executed (it was
  not reviewed) and does not make the plan stale; the next plan shows it;
- manifests and state changes that do not affect a touched address never make the plan stale
  (the manifests' digest is recorded for information only).

The one global check is the state's lineage: a plan made against another state document (the
state was replaced or migrated from elsewhere) is stale as a whole. A move the saved plan did not
show (an entry added to `moved:` since) makes it stale too: apply records every move it finds, so
an unreviewed one must not slip in. `--replace` addresses are saved with the plan and re-planned
with it, like `--target`.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobrunner.errors import StalePlanError, UsageError
from jobrunner.fingerprint import fingerprint
from jobrunner.plan_types import CHANGING, MOVED, Plan, PlannedChange

SAVED_PLAN_KIND = "jobrunner-saved-plan"
SAVED_PLAN_FORMAT = 1

# Spec keys whose effect is already in each job's fingerprint, and which must not put every item of
# a batch out of scope when one row changes.
_PER_ITEM_KEYS = frozenset({"input", "inputs", "inputs_file", "input_defaults"})


def read_saved_plan(path: Path) -> dict[str, Any] | None:
    """The saved plan in `path`, or None when it is not one (then `apply` takes it as a manifest path).

    Raises UsageError for a saved plan of a format this version does not read.
    """
    if not path.is_file() or path.suffix.lower() not in (".json", ".plan", ".tfplan", ""):
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        if _looks_like_saved_plan(path, text):
            # Read as a manifest it would be reported as invalid YAML: true, and no help at all.
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise UsageError(
                f"{path}: this saved plan is damaged: it is not valid JSON{where} (cut short or edited?)",
                hint=f"make it again with `jobrunner plan --out {path}` and review it; "
                     "a saved plan is never edited by hand",
            ) from None
        return None
    if not isinstance(data, dict) or data.get("kind") != SAVED_PLAN_KIND:
        return None
    if data.get("format_version") != SAVED_PLAN_FORMAT:
        raise UsageError(f"{path}: saved plan format {data.get('format_version')!r} is not supported",
                         hint="run `jobrunner plan --out` again with this version of jobrunner")
    return data


def _looks_like_saved_plan(path: Path, text: str) -> bool:
    """A file `plan --out` wrote: its own suffixes, its kind, or the JSON object it starts with."""
    if path.suffix.lower() in (".plan", ".tfplan") or SAVED_PLAN_KIND in text:
        return True
    head = text.lstrip()[:200]
    return head.startswith("{") and '"changes"' in head


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of a resource spec's canonical JSON, without the per-item input keys.

    Covers what the fingerprint leaves out on purpose (timeout, retry, lifecycle, webhook, output
    file): those do not change a job's result, but a reviewed plan ran with them.
    """
    return fingerprint({k: v for k, v in spec.items() if k not in _PER_ITEM_KEYS})


def _resource_address(address: str) -> str:
    return address.split("[", 1)[0]


def _entry(change: PlannedChange, specs: dict[str, str]) -> dict[str, Any]:
    entry = {
        "address": change.address,
        "action": change.action,
        "touches": change.action in CHANGING,
        "fingerprint_after": change.fingerprint_after,
        "remote_status": change.remote_status,
        "remote_id": change.prior.remote_id if change.prior else None,
        "spec_digest": specs.get(_resource_address(change.address)),
    }
    if change.moved_from:  # only on declared renames, so plans without moves read as before
        entry["moved_from"] = change.moved_from
    return entry


def saved_plan_document(plan: Plan, resources: list[Any], targets: tuple[str, ...] | list[str],
                        rendered_json: dict[str, Any] | None, *,
                        replace: tuple[str, ...] | list[str] = (), allow_over_budget: bool = False) -> dict[str, Any]:
    """The JSON document `plan --out` writes (redacted: it holds no inputs, only digests).

    `allow_over_budget` (written only when given) records that `plan --allow-over-budget` let a
    plan over the workspace's budget policy through: `apply PLANFILE` allows exactly that again.
    """
    specs = {r.address: spec_digest(r.spec) for r in resources}
    extra: dict[str, Any] = {"allow_over_budget": True} if allow_over_budget else {}
    return {
        **extra,
        "kind": SAVED_PLAN_KIND,
        "format_version": SAVED_PLAN_FORMAT,
        "paths": plan.paths,
        "targets": list(targets),
        "replace": list(replace),
        "manifests_digest": plan.manifests_digest,
        "state_lineage": plan.state_lineage,
        "state_serial": plan.state_serial,
        "changes": [_entry(c, specs) for c in plan.changes],
        "plan": rendered_json,
    }


@dataclass
class ScopedCheck:
    """What the check decided: the plan to execute, and addresses held back (not reviewed)."""

    plan: Plan
    held_back: dict[str, str] = field(default_factory=dict)  # address -> action the fresh plan wanted

    def notes(self) -> list[str]:
        if not self.held_back:
            return []
        listed = ", ".join(f"{a} ({act})" for a, act in sorted(self.held_back.items()))
        return [f"not in the saved plan, so not applied now (the next plan shows them): {listed}"]


def _touches(entry: dict[str, Any]) -> bool:
    # Plans saved before "touches" was recorded: derive it from the action.
    return bool(entry.get("touches", entry.get("action") in CHANGING))


def check_saved_plan(saved: dict[str, Any], fresh: Plan, resources: list[Any]) -> ScopedCheck:
    """Compare a fresh plan with a saved one, for the saved plan's touched addresses only.

    Returns the fresh plan restricted to the saved plan's addresses (the touched ones with the
    same decision, and the untouched ones only while they still need nothing), or raises
    `StalePlanError` (exit 3) with one line per address that moved.
    """
    moved: dict[str, str] = {}
    if saved.get("state_lineage") and fresh.state_lineage and saved["state_lineage"] != fresh.state_lineage:
        moved["(state)"] = (f"the state was replaced (lineage {saved['state_lineage']} when planned, "
                            f"now {fresh.state_lineage})")
    specs = {r.address: spec_digest(r.spec) for r in resources}
    by_addr = {c.address: c for c in fresh.changes}
    keep: list[PlannedChange] = []
    held_back: dict[str, str] = {}
    for entry in saved.get("changes", []):
        addr = entry["address"]
        now = by_addr.get(addr)
        if not _touches(entry):
            if now is not None and now.action in CHANGING:
                held_back[addr] = now.action
            elif now is not None:
                keep.append(now)
            continue
        why = _what_moved(entry, now, specs)
        if why:
            moved[addr] = why
        elif now is not None:
            keep.append(now)
    saved_addresses = {e["address"] for e in saved.get("changes", [])}
    for c in fresh.changes:
        if c.address not in saved_addresses and c.moved_from:
            moved[c.address] = f"moved from {c.moved_from} by a moved entry the plan did not show"
        elif c.address not in saved_addresses and c.action in CHANGING:
            held_back[c.address] = c.action
    if moved:
        report = "\n".join(f"  {a}: {why}" for a, why in sorted(moved.items()))
        raise StalePlanError(
            f"the saved plan is stale: {len(moved)} address(es) it touches changed since it was made\n{report}",
            moved,
            hint="nothing was applied; run `jobrunner plan --out` again and review the new plan",
        )
    order = {c.address: i for i, c in enumerate(fresh.changes)}
    keep.sort(key=lambda c: order[c.address])
    restricted = Plan(
        changes=keep,
        paths=fresh.paths,
        manifests_digest=fresh.manifests_digest,
        state_lineage=fresh.state_lineage,
        state_serial=fresh.state_serial,
        warnings=list(fresh.warnings),
    )
    return ScopedCheck(plan=restricted, held_back=held_back)


def _what_moved(entry: dict[str, Any], now: PlannedChange | None, specs: dict[str, str]) -> str | None:
    planned = entry["action"]
    if now is None:
        return f"planned {planned}, now nothing to do"
    if now.action != planned:
        return f"planned {planned}, now {now.action} ({now.reason})"
    if (now.moved_from or None) != (entry.get("moved_from") or None):
        return (f"planned as moved from {entry.get('moved_from') or 'nowhere'}, now moved from "
                f"{now.moved_from or 'nowhere'}")
    # A move changes nothing on the provider: a moved job that finished since is still the same move.
    if planned != MOVED and (now.remote_status or None) != (entry.get("remote_status") or None):
        return f"remote status was {entry.get('remote_status') or 'none'}, now {now.remote_status or 'none'}"
    remote_id = now.prior.remote_id if now.prior else None
    if (remote_id or None) != (entry.get("remote_id") or None):
        return f"state now records remote job {remote_id or 'none'}, the plan saw {entry.get('remote_id') or 'none'}"
    if now.fingerprint_after != entry.get("fingerprint_after"):
        return "the desired job changed (its input, model, version or destination)"
    saved_spec = entry.get("spec_digest")
    current_spec = specs.get(_resource_address(entry["address"]))
    if saved_spec and current_spec and saved_spec != current_spec:
        return "its manifest changed (e.g. timeout, retry, lifecycle, webhook or output file)"
    return None


def render_json_or_none(render: Callable[[Plan], str], plan: Plan) -> dict[str, Any] | None:
    """The human-facing JSON plan for the saved file; a convenience, never a reason to fail."""
    try:
        return json.loads(render(plan))
    except Exception:
        return None
