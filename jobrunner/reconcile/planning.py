"""From a workspace to a plan: validate, expand, refresh, check against the providers, diff.

This is the I/O shell around the pure plan engine, shared by `plan`, `apply`, `destroy` and
`import`. Order matters: manifests are validated first (errors stop everything before any request
is sent); desired jobs are expanded with the outputs state already holds, minus those of
resources about to change (so a dependent of a changing training shows "known after apply"
instead of a stale noop); then only non-terminal tracked jobs and pending intents are looked up;
then training destinations and version input schemas are checked, for jobs about to be created only.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobrunner.errors import Diagnostic, ManifestError, PlanError, UsageError
from jobrunner.plan_types import CANCEL, CREATE, DELETE, FORGET, REPLACE, RETRY, Plan, PlannedChange, Policy
from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import RemoteJob
from jobrunner.reconcile import requests as rq
from jobrunner.reconcile.intent_lookup import lookup_intents
from jobrunner.refresh import refresh_tracked
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, DesiredJob, Resource
from jobrunner.state.gcpause import planned_without_collections
from jobrunner.state.model import StateDoc

CREATING = frozenset({CREATE, REPLACE, RETRY})


@dataclass
class Workspace:
    root: Path
    config: Any
    store: Any


@dataclass
class Planned:
    plan: Plan
    resources: list[Resource]
    desired: list[DesiredJob]
    remote: dict[str, RemoteJob]
    files: list[str]
    warnings: list[str] = field(default_factory=list)
    # Batch rows as validation read them, so expanding again (apply) neither re-reads nor re-parses.
    items: dict[str, list[Any]] = field(default_factory=dict)
    # Addresses whose recorded status or outputs the refresh changed in `doc` (jobs that finished
    # while no apply watched them): apply saves them even when the plan has nothing to do.
    absorbed: list[str] = field(default_factory=list)
    # Addresses planning gave a recovery lookup intent (a state restored from its backup). The
    # same planning may have cleared `doc.recovered_at`, and a journal record always carries that
    # flag: apply's first save must carry these intents too, or a kill right after it leaves a
    # state that neither is flagged nor has the intents, and the next apply creates them again.
    recovery_marked: tuple[str, ...] = ()
    # Resource addresses validation warned about; None when a warning named none. Apply marks
    # only batches without warnings settled (reconcile.settledmarks).
    warned: frozenset[str] | None = frozenset()

    def __repr__(self) -> str:  # asyncio may repr a finished task's result: keep that cheap
        return f"Planned({len(self.plan.changes)} changes, {len(self.desired)} desired jobs)"


def open_workspace(start: Path | None = None, *, paths: tuple[str, ...] | list[str] = ()) -> Workspace:
    """The workspace a command run in `start` (default: cwd) on manifest `paths` works on
    (`workspace.find_workspace_for`), with its config and state store (nothing is written)."""
    from jobrunner.providers.wire import check_transport_choice
    from jobrunner.state.store import open_store
    from jobrunner.workspace import find_workspace_for, load_config

    check_transport_choice(os.environ)  # before anything is read or sent: a typo must not pass unseen
    root = find_workspace_for([Path(p) for p in paths], start)
    config = load_config(root)
    return Workspace(root=root, config=config, store=open_store(config, root))


def resolve_paths(paths: tuple[str, ...] | list[str], root: Path) -> list[Path]:
    """Command-line paths (default: the current directory) as absolute paths that must exist."""
    out = []
    for p in paths or (".",):
        path = Path(p)
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.exists():
            raise UsageError(f"{p}: no such file or directory")
        out.append(path.resolve())
    return out


def load_resources(paths: list[Path], root: Path) -> tuple[list[Resource], list[str], list[Diagnostic]]:
    """Validated resources, the manifest files read, and warnings; raises ManifestError on errors."""
    result = load_validated(paths, root)
    return list(result.resources), list(result.files), warnings_of(result)


def load_validated(paths: list[Path], root: Path, *, doc: StateDoc | None = None,
                   rel_paths: list[str] | None = None, settled: Any = None) -> Any:
    """The ValidationResult of the manifests under `paths`; raises ManifestError on errors.

    With `doc` (and the planned `rel_paths`), every file state tracks jobs from under those paths
    is read too, whatever it now holds, and removal is guarded (see `tracked_by_file`): a tracked
    file with errors or with no documents left stops the plan, naming the file and its jobs.
    """
    from jobrunner.validate import validate_paths

    tracked = tracked_by_file(doc, rel_paths if rel_paths is not None else ["."]) if doc is not None else {}
    existing = [root / f for f in tracked if (root / f).is_file()]
    result = validate_paths(paths, root, also=existing, settled=settled)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors or not result.ok:
        raise ManifestError(list(result.diagnostics), note=_tracked_note({d.file for d in errors}, tracked, doc))
    _refuse_emptied(result.empty_files, tracked, doc)
    return result


def tracked_by_file(doc: StateDoc, rel_paths: list[str]) -> dict[str, list[str]]:
    """Addresses state tracks, by their recorded manifest file, for files under `rel_paths`.

    These are the only addresses a plan may call removed, and only when their file was deleted
    or still reads as jobrunner manifests that no longer define them: a file that exists but no
    longer yields jobrunner documents (a typo in apiVersion, a YAML error, emptied) is an error.
    """
    out: dict[str, list[str]] = {}
    under: dict[str, bool] = {}  # per file: a state of 100,000 addresses names a handful of files
    for address, st in doc.addresses.items():
        file = st.file
        if not file:
            continue
        hit = under.get(file)
        if hit is None:
            hit = under[file] = _under(file, rel_paths)
        if hit:
            out.setdefault(file, []).append(address)
    for addresses in out.values():
        addresses.sort()  # a loaded state is in address order already: a quick pass, no tuple per address
    return out


def _jobs_phrase(addresses: list[str], doc: StateDoc) -> str:
    """`200 tracked addresses (142 running)`: what a broken or emptied file stands for."""
    from jobrunner.providers.base import TERMINAL

    running = sum(1 for a in addresses if (st := doc.addresses[a]).remote_id and st.job_kind != JOB_MODEL
                  and st.status not in TERMINAL)
    noun = "address" if len(addresses) == 1 else "addresses"
    return f"{len(addresses)} tracked {noun}" + (f" ({running} running)" if running else "")


def _tracked_note(bad_files: set[str], tracked: dict[str, list[str]], doc: StateDoc | None) -> str | None:
    """Lines naming each file with errors that state tracks jobs from (None when there is none)."""
    if doc is None:
        return None
    hit = sorted(f for f in bad_files if f in tracked)
    if not hit:
        return None
    lines = [f"{f} holds {_jobs_phrase(tracked[f], doc)}; while it has errors none of them is planned, "
             "canceled or forgotten" for f in hit]
    lines.append("Nothing was sent to any provider. To remove those jobs on purpose, delete the file "
                 "(or their documents) once it reads again.")
    return "\n".join(lines)


def _refuse_emptied(empty_files: list[str], tracked: dict[str, list[str]], doc: StateDoc | None) -> None:
    """A tracked file that now holds no document at all (emptied, truncated, all commented out)
    is refused, not read as a removal: an accident (a bad merge, a truncated write, a commented
    block) must not cancel paid work, and deleting the file says "remove" unambiguously."""
    if doc is None:
        return
    hit = sorted(f for f in empty_files if f in tracked)
    if not hit:
        return
    raise PlanError(
        "\n".join(f"{f} holds no jobrunner documents (empty or all commented out), but state records "
                  f"{_jobs_phrase(tracked[f], doc)} from it; jobrunner does not read that as a removal"
                  for f in hit) + "\nNothing was sent to any provider.",
        hint=(f"restore its documents (e.g. `git checkout -- {' '.join(hit)}`); to remove its jobs on purpose, "
              "delete the file (plan then shows cancel/forget)"),
    )


def require_manifests(ws: Workspace, paths: list[Path], *, whole_state: bool = False) -> None:
    """UsageError when `paths` hold no manifest and state tracks no job from them.

    Called before any lock is taken, so a command run in the wrong directory writes nothing
    (no `.jobrunner/` appears there) and says so, instead of "No changes". `whole_state`
    (destroy): any tracked job anywhere in the workspace is enough.
    """
    from jobrunner.workspace import discover_manifest_files

    if discover_manifest_files(paths, ws.root):
        return
    doc = ws.store.load()
    rel_paths = ["."] if whole_state else [_rel(p, ws.root) for p in paths]
    if tracked_by_file(doc, rel_paths) or (whole_state and doc.addresses):
        return
    where = ", ".join(str(p) for p in paths) or str(Path.cwd())
    describe = getattr(ws.store, "describe", None)
    state = describe() if callable(describe) else "state"
    raise UsageError(
        f"No manifests found under {where}: no *.yaml or *.yml file there carries `apiVersion: jobrunner/v1`, "
        f"and the workspace {ws.root} ({state}) tracks no job from there. Nothing was written.",
        hint=("run jobrunner inside your workspace (the directory holding jobrunner.yaml, or below it) or name the "
              "manifest files; `jobrunner init` makes the current directory a workspace"),
    )


def open_manifests(paths: tuple[str, ...] | list[str]) -> tuple[Workspace, Any]:
    """The workspace of `paths` and its validated manifests there, for commands that read manifests
    without planning (import, state recover); refuses paths that hold none (`require_manifests`)."""
    ws = open_workspace(paths=paths)
    abs_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, abs_paths)
    return ws, load_validated(abs_paths, ws.root)


def warnings_of(result: Any) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity != "error"]


def manifests_digest(files: list[str], root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.encode() + b"\0")
        with contextlib.suppress(OSError):
            h.update((root / f).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def output_files(resources: list[Resource]) -> dict[str, str]:
    return {r.address: str(r.spec["output_file"]) for r in resources
            if r.kind == "PredictionBatch" and r.spec.get("output_file")}


def expand_desired(resources: list[Resource], root: Path, doc: StateDoc,
                   items: dict[str, list[Any]] | None = None, settled: Any = None) -> list[DesiredJob]:
    """Desired jobs; references resolve only from upstreams that will not re-run (spec.expand).

    `items`: batch rows already read by validation (ValidationResult.items), reused as they are.
    `settled`: the proofs of batches proven settled (reconcile.settledmarks.SettledCheck.proofs).
    """
    from jobrunner.redact import register_jobs
    from jobrunner.spec import SettledJob, expand

    desired = expand(resources, root, state=doc, items=items, settled=settled)
    # Every secret value the manifests hold (sensitive inputs, webhook URL parts) is scrubbed from
    # everything this command stores or prints from here on, wherever it turns up (redact.SECRETS).
    # A settled batch's rows hold none: it is marked only then (redact.jobs_hold_no_secrets).
    register_jobs((j for j in desired if type(j) is not SettledJob), root)  # with root: {$file} contents too
    return desired


def settled_check(ws: Workspace, doc: StateDoc, targets: tuple[str, ...], replace: tuple[str, ...]) -> Any:
    """What proves batches settled for this plan (reconcile.settledmarks.SettledCheck), or None
    where the full path is taken whatever the marks say: `--target` and `--replace` (which pick
    rows out of batches), declared moves (which re-key state after validation), and a state
    restored from a backup (every address is looked up again)."""
    from jobrunner.moves import read_moves
    from jobrunner.reconcile.settledmarks import SettledCheck

    if targets or replace or doc.recovered_at is not None:
        return None
    moves, problems = read_moves(ws.root)
    if moves or problems:
        return None
    return SettledCheck(ws.root, doc)


def _file_placeholders(value: Any) -> Any:
    """Stand-in strings for `{$file: p}` so input schemas (which expect a URI) can be checked."""
    if rq.is_file_marker(value):
        return f"file:///{value['$file']}"
    if isinstance(value, dict):
        return {k: _file_placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_file_placeholders(v) for v in value]
    return value


async def _model_exists(provider: Any, owner: str, name: str) -> bool:
    from jobrunner.errors import NotFoundError

    try:
        return (await provider.get_model(owner, name)) is not None
    except NotFoundError:
        return False


MAX_PROBLEMS = 50


def _item_location(res: Resource, root: Path, address: str,
                   cache: dict[str, dict[str, tuple[str, int, str]]]) -> tuple[str, int, str]:
    """(file, line, json path) of the batch row behind `address` (only computed on the error path)."""
    if res.address not in cache:
        from jobrunner.inputs import read_batch_items

        try:
            items = read_batch_items(res, root)
        except Exception:  # the location is a nicety; never fail the report over it
            items = []
        cache[res.address] = {f"{res.address}[{i.key}]": (i.file or res.file, i.line, i.json_path) for i in items}
    return cache[res.address].get(address, (res.file, res.line, ""))


async def check_against_providers(plan: Plan, resources: dict[str, Resource], doc: StateDoc, pool: Any,
                                  ws_root: Path | None = None) -> None:
    """Plan-time errors: undeclared, missing training destinations; inputs the version rejects."""
    checks = _ProviderChecks(pool, _known_models(resources, doc), ws_root)
    problems: list[str] = []
    locations: dict[str, dict[str, tuple[str, int, str]]] = {}
    for change in plan.changes:
        job = change.job
        if (job is None or change.action not in CREATING or job.job_kind in (JOB_MODEL, JOB_DEPLOYMENT)
                or adapter_for(job.provider).form is not RequestForm.VERSIONED):
            continue
        res = resources.get(job.resource_address)
        if job.fingerprint is None:
            continue  # version known after apply: checked by the provider at create time
        problems.extend(await checks.problems(job, res, locations))
    if problems:
        # Deduplicate but keep order; a batch of thousands of bad rows shows the first ones.
        seen = list(dict.fromkeys(problems))
        shown = seen[:MAX_PROBLEMS] + ([f"... and {len(seen) - MAX_PROBLEMS} more"] if len(seen) > MAX_PROBLEMS else [])
        raise PlanError("\n".join(shown), hint="fix the manifests; nothing was sent to create any job")


def _known_models(resources: dict[str, Resource], doc: StateDoc) -> set[str]:
    """`owner/name` of every model a destination may name without asking: declared or created."""
    known = {st.outputs.get("name") for st in doc.addresses.values() if st.job_kind == JOB_MODEL}
    for r in resources.values():
        if r.kind == "Model":
            owner, name = r.spec.get("owner"), r.spec.get("name") or r.name
            if owner:
                known.add(f"{owner}/{name}")
    return {m for m in known if m}


class _ProviderChecks:
    """What plan asks a VERSIONED provider about a job it would create, each question asked once:
    does the training's destination model exist, and does the version's input schema accept
    the input."""

    def __init__(self, pool: Any, known_models: set[str], root: Path | None) -> None:
        self.pool, self.known_models, self.root = pool, known_models, root
        self.destinations: dict[tuple[str, str], bool] = {}
        self.schemas: dict[tuple[str, str, str, str], Any] = {}

    async def problems(self, job: DesiredJob, res: Resource | None,
                       locations: dict[str, dict[str, tuple[str, int, str]]]) -> list[str]:
        where = f"{res.file}:{res.line}: " if res else ""
        req = rq.create_request(job, res.spec if res else {})
        found: list[str] = []
        dest = req.destination if job.job_kind == JOB_TRAINING else None
        if dest and dest not in self.known_models and not await self._destination_exists(job.provider, dest):
            found.append(f"{where}{job.address}: destination model {dest} does not exist on {job.provider} "
                         f"and is not declared (add a `kind: Model` manifest for it, or create it)")
        if req.model and req.version:
            schema = await self._schema(job.provider, req.model, req.version, job.job_kind)
            if isinstance(schema, Exception):
                found.append(f"{where}{job.address}: version {req.model}:{req.version} not found on {job.provider}")
            elif schema:
                found.extend(self._input_problems(schema, job, res, req, where, locations))
        return found

    async def _destination_exists(self, provider: str, dest: str) -> bool:
        key = (provider, dest)
        if key not in self.destinations:
            owner, _, name = dest.partition("/")
            self.destinations[key] = await _model_exists(self.pool.get(provider), owner, name)
        return self.destinations[key]

    async def _schema(self, provider: str, model: str, version: str, job_kind: str) -> Any:
        """The version's OpenAPI schema (None: none published), or the NotFoundError of a missing version."""
        from jobrunner.errors import NotFoundError

        key = (provider, model, version, job_kind)
        if key not in self.schemas:
            try:
                # A VERSIONED provider's client reads version schemas (`get_version_schema`).
                self.schemas[key] = await self.pool.get(provider).get_version_schema(model, version, job_kind)
            except NotFoundError as exc:  # reported per job; a missing version is a plan error
                self.schemas[key] = exc
        return self.schemas[key]

    def _input_problems(self, schema: Any, job: DesiredJob, res: Resource | None, req: Any, where: str,
                        locations: dict[str, dict[str, tuple[str, int, str]]]) -> list[str]:
        import jsonschema

        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
        found = []
        for err in sorted(validator.iter_errors(_file_placeholders(req.body.get("input") or {})),
                          key=lambda e: list(map(str, e.absolute_path))):
            inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            path = "$.spec.input" + inner
            if job.job_kind == JOB_PREDICTION and res is not None:
                item = _item_location(res, self.root or Path.cwd(), job.address, locations)
                path = (item[2] or "$.spec.inputs") + inner
                loc = f"{item[0]}:{item[1]}: " if item[1] else where
            else:
                pos = res.position(path) if res else None
                loc = f"{res.file}:{pos.line}:{pos.column}: " if res and pos else where
            found.append(f"{loc}{job.address}: {path}: {err.message} "
                         f"(input schema of {req.model}:{req.version[:12]})")
        return found


def _expand_without(forced: set[str], resources: list[Resource], root: Path, doc: StateDoc,
                    items: dict[str, list[Any]]) -> list[DesiredJob]:
    """Desired jobs with the outputs of trainings `--replace` re-runs unknown: their dependents show
    "known after apply" and run again with the new outputs, not the old ones."""
    from dataclasses import replace as dc_replace

    from jobrunner.spec import expand

    # A view of state in which the forced runs are not settled (the document itself is unchanged).
    view = dc_replace(doc, addresses={a: (dc_replace(st, status=None) if a in forced else st)
                                      for a, st in doc.addresses.items()})
    return expand(resources, root, state=view, items=items)


def apply_declared_moves(ws: Workspace, validated: Any, doc: StateDoc, rel_paths: list[str]) -> dict[str, str]:
    """Check jobrunner.yaml's `moved` list and re-key `doc` in memory; returns {new: old}.

    Runs before refresh and expansion, so references and fingerprints are seen at the new
    addresses. Nothing is saved here: apply's first save records the moves (one atomic save).
    """
    from jobrunner.moves import apply_moves, check_moves, read_moves, resolve_moves

    moves, diags = read_moves(ws.root)
    keys = {res: [i.key for i in items] for res, items in validated.items.items()}
    diags += check_moves(moves, validated.resources, keys)
    if diags:
        raise ManifestError(diags)
    if not moves:
        return {}
    defined = {r.address: r.file for r in validated.resources}
    pairs = resolve_moves(moves, doc, defined, planned_files(list(validated.files), rel_paths, doc))
    apply_moves(doc, pairs, defined)
    return {new: old for old, new in pairs.items()}


def record_lifecycles(plan: Plan, resources: dict[str, Resource], doc: StateDoc) -> list[str]:
    """Bring the `lifecycle` state records up to date for the plan's addresses; returns those changed.

    A lifecycle enters no fingerprint, so adding `prevent_destroy` to a deployment (or
    `on_remove` to a training) plans no change; yet removal is planned from what state records,
    so the flag must be recorded by the next apply for the protection to outlive the manifest.
    """
    changed: list[str] = []
    wanted_of: dict[str, dict[str, Any] | None] = {}  # per resource, not per batch item
    for change in plan.changes:
        st = doc.addresses.get(change.address)
        res = resources.get(change.job.resource_address) if change.job is not None else None
        if st is None or res is None:
            continue
        if res.address not in wanted_of:
            wanted_of[res.address] = dict(res.spec.get("lifecycle") or {}) or None
        wanted = wanted_of[res.address]
        if st.lifecycle != wanted:
            st.lifecycle = dict(wanted) if wanted is not None else None  # each address its own copy
            changed.append(change.address)
    return changed


def _refreshed(doc: StateDoc, rel_paths: list[str]) -> list[str]:
    """What refresh asks about: every tracked job, and the deployments of the planned files only (a
    deployment is always asked about, so one elsewhere would need its provider's credential for
    a plan that cannot change it)."""
    return [a for a, st in doc.addresses.items() if st.job_kind != JOB_DEPLOYMENT or _under(st.file, rel_paths)]


@planned_without_collections  # see jobrunner.state.gcpause
async def make_plan(ws: Workspace, paths: list[Path], doc: StateDoc, pool: Any, *,
                    targets: tuple[str, ...] = (), check_remote: bool = True,
                    replace: tuple[str, ...] = ()) -> Planned:
    from jobrunner.plan import compute_plan, expand_replace
    from jobrunner.refresh import absorb

    rel_paths = [_rel(p, ws.root) for p in paths]
    check = settled_check(ws, doc, targets, replace)
    validated = load_validated(paths, ws.root, doc=doc, rel_paths=rel_paths, settled=check)
    resources, files, warnings = list(validated.resources), list(validated.files), warnings_of(validated)
    by_res = {r.address: r for r in resources}
    doc.check_remote_ids()  # one remote job, one address: a state that breaks it is not planned on
    moved = apply_declared_moves(ws, validated, doc, rel_paths)
    remote = await refresh_tracked(doc, pool, addresses=_refreshed(doc, rel_paths))
    absorbed = absorb(doc, remote, only_succeeded=True)  # outputs of jobs that finished unattended
    desired = expand_desired(resources, ws.root, doc, validated.items, check.proofs if check is not None else None)
    forced = expand_replace(replace, desired)
    if any("[" not in a for a in forced):
        desired = _expand_without(forced, resources, ws.root, doc, validated.items)
    # The rows serve apply only to expand a job again once its upstream ran (commands.execute):
    # without such a job they are let go now, before the plan is built (100,000 rows: ~15 MB).
    items = validated.items if any(j.fingerprint is None for j in desired) else {}
    validated.items = items
    # A state restored from a backup: what it may lack is looked up before anything is created.
    from jobrunner.state.recovery import mark_recovery_lookups

    whole = any(p == ws.root or p in ws.root.parents for p in paths)
    marks = mark_recovery_lookups(doc, desired, whole_workspace=whole, seen=remote)
    remote.update(await lookup_intents(doc, desired, by_res, pool, restored=marks.addresses))
    digest = manifests_digest(files, ws.root)
    plan = compute_plan(desired, doc, remote, planned_files=planned_files(files, rel_paths, doc), resources=resources,
                        paths=rel_paths, manifests_digest=digest, replace=forced, moved=moved)
    plan.paths = plan.paths or rel_paths
    plan.manifests_digest = plan.manifests_digest or digest
    # A state never saved has a lineage minted at load time: meaningless for saved-plan checks.
    plan.state_lineage = doc.lineage if doc.serial else ""
    plan.state_serial = plan.state_serial or doc.serial
    absorbed += absorb(doc, remote)  # the plan has explained any drift; state now records what was seen
    if targets:
        from jobrunner.plan import filter_plan

        plan = filter_plan(plan, targets)
    absorbed += record_lifecycles(plan, by_res, doc)
    if check_remote:
        await check_against_providers(plan, by_res, doc, pool, ws.root)
    estimate_into(plan, doc, resources, ws.config)
    return Planned(plan=plan, resources=resources, desired=desired, remote=remote, files=files,
                   warnings=[w.format() for w in warnings], items=items, absorbed=absorbed,
                   recovery_marked=marks.addresses, warned=_warned(warnings))


def _warned(warnings: list[Diagnostic]) -> frozenset[str] | None:
    """The resource addresses `warnings` name; None when one names none."""
    if any(not w.address for w in warnings):
        return None
    return frozenset(str(w.address).split("[", 1)[0] for w in warnings)


def estimate_into(plan: Plan, doc: StateDoc, resources: list[Resource], config: Any,
                  parallelism: int | None = None) -> None:
    """Attach the duration and cost estimate of `plan`'s changes (jobrunner.estimate) to it."""
    from jobrunner.estimate.estimator import context_for, estimate_plan

    plan.estimate = estimate_plan(plan.changes, doc, resources, context_for(config, parallelism))


def destroy_changes(chosen: dict[str, Any], resources: dict[str, Resource],
                    tracked: dict[str, Any] | None = None) -> list[PlannedChange]:
    """What destroy does to each chosen address (state refreshed): cancel running jobs, delete
    Emissary jobs and deployments, delete trained versions whose lifecycle says
    `on_remove: delete_version`, forget the rest; models stay on the provider.

    Raises PlanError naming every running job its manifest protects with `lifecycle.prevent_cancel`,
    and (`tracked`: every address in state) every trained version to delete that a deployment this
    destroy keeps (--target) still serves: the provider would refuse it.
    """
    from jobrunner.providers.base import TERMINAL
    from jobrunner.reconcile.outputs import resource_of

    changes: list[PlannedChange] = []
    protected: list[str] = []
    for addr, st in sorted(chosen.items()):
        if st.job_kind == JOB_DEPLOYMENT:
            changes.append(_destroy_deployment(st, resources.get(resource_of(addr)), protected))
            continue
        version_delete = _destroy_trained_version(st, resources.get(resource_of(addr)))
        if version_delete is not None:
            changes.append(version_delete)
            continue
        running = bool(st.remote_id) and st.job_kind != JOB_MODEL and st.status not in TERMINAL
        adapter = adapter_for(st.provider)
        deleted = adapter.capabilities.delete_on_destroy and bool(st.remote_id)
        res = resources.get(resource_of(addr))
        lifecycle = (res.spec.get("lifecycle") or {}) if res is not None else {}
        if running and lifecycle.get("prevent_cancel"):
            protected.append(addr)
        action = CANCEL if running or deleted else FORGET
        # The renderer names the action ("cancel:", "forget:"); the reason says why and what follows.
        reason = ("still running; forgotten once canceled" if running else
                  f"the {adapter.title} job is deleted, then forgotten" if deleted else
                  "the model stays on the provider" if st.job_kind == JOB_MODEL else
                  f"already {st.status or 'ended'}")
        changes.append(PlannedChange(address=addr, action=action, reason=reason, job=None, prior=st,
                                     fingerprint_before=st.fingerprint, remote_status=st.status))
    if protected:
        raise PlanError("destroy would cancel or delete what lifecycle.prevent_cancel or prevent_destroy protects: "
                        + ", ".join(protected),
                        hint="remove the protection from their manifests, or destroy other addresses with --target")
    _refuse_served_versions(changes, tracked or chosen, set(chosen))
    return changes


def _version_id(ref: Any) -> str | None:
    return ref.rsplit(":", 1)[-1] if isinstance(ref, str) and ref else None


def _refuse_served_versions(changes: list[PlannedChange], tracked: dict[str, Any], chosen: set[str]) -> None:
    """A version a kept deployment serves cannot be deleted (the provider answers 409): refuse the
    destroy before anything is sent, naming the deployment to add to --target."""
    served = {_version_id(st.outputs.get("version")): addr for addr, st in tracked.items()
              if st.job_kind == JOB_DEPLOYMENT and addr not in chosen and st.remote_id}
    blocked = [f"{c.address} (served by {served[vid]})" for c in changes
               if c.action == DELETE and c.prior is not None and c.prior.job_kind == JOB_TRAINING
               and (vid := _version_id(c.prior.outputs.get("version"))) in served]
    if blocked:
        raise PlanError("destroy would delete trained versions that deployments it keeps still serve: "
                        + ", ".join(blocked),
                        hint="destroy the deployment too (add it with --target), or point it at another version "
                             "and apply that first")


def _destroy_trained_version(st: Any, res: Resource | None) -> PlannedChange | None:
    """Destroy honours `lifecycle.on_remove: delete_version` as a removal does: a training that
    succeeded and recorded its version has that version deleted (the manifest's lifecycle, else the
    one state recorded). None: not such a training (destroy cancels or forgets it as any job)."""
    from jobrunner.providers.base import SUCCEEDED

    if st.job_kind != JOB_TRAINING or st.status != SUCCEEDED or not st.remote_id:
        return None
    policy = Policy.of(res.spec) if res is not None else Policy.of(None, st.lifecycle)
    version = st.outputs.get("version")
    if policy.on_remove != "delete_version" or not isinstance(version, str):
        return None
    if not adapter_for(st.provider).capabilities.delete_versions:
        return None
    return PlannedChange(address=st.address, action=DELETE,
                         reason=f"lifecycle.on_remove is delete_version: its trained version {version} is deleted, "
                                "then forgotten", job=None, prior=st, fingerprint_before=st.fingerprint,
                         remote_status=st.status, policy=policy)


def _destroy_deployment(st: Any, res: Resource | None, protected: list[str]) -> PlannedChange:
    """Destroy deletes a deployment on the provider, unless its lifecycle (the manifest's, else the
    one state recorded) says prevent_destroy; one already gone is only forgotten."""
    from jobrunner.providers.base import GONE

    lifecycle = (res.spec.get("lifecycle") or {}) if res is not None else (st.lifecycle or {})
    if not st.remote_id or st.status == GONE:
        return PlannedChange(address=st.address, action=FORGET, reason="nothing to delete on the provider", job=None,
                             prior=st, fingerprint_before=st.fingerprint, remote_status=st.status)
    if lifecycle.get("prevent_destroy"):
        protected.append(st.address)
    return PlannedChange(address=st.address, action=DELETE, reason=f"{st.remote_id} is deleted, then forgotten",
                         job=None, prior=st, fingerprint_before=st.fingerprint, remote_status=st.status)


def planned_files(files: list[str], rel_paths: list[str], doc: StateDoc) -> set[str]:
    """Files this plan speaks for: those read, plus recorded files under the planned paths that
    no longer exist (a deleted manifest's addresses are removed, not silently kept)."""
    out = set(files)
    for st in doc.addresses.values():
        if st.file not in out and _under(st.file, rel_paths):
            out.add(st.file)
    return out


def _under(file: str, rel_paths: list[str]) -> bool:
    """Whether a workspace-relative file is one of, or below one of, the planned paths."""
    return any(p in (".", "") or file == p or file.startswith(p.rstrip("/") + "/") for p in rel_paths)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
