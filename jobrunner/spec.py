"""Spec expansion: from validated manifest resources to the units the plan reasons about.

- a `Training` is one job, address `Training/name`;
- a `PredictionBatch` is one prediction per item, address `PredictionBatch/name[key]`;
- a `Model` is one `job_kind="model"` unit, address `Model/name` (created once, never deleted);
- a `Deployment` is one `job_kind="deployment"` unit, address `Deployment/name`, built by its
  provider's `DeploymentForm` (updated in place where the provider can, deleted on removal).

Each unit carries a provider-neutral `request` (what the reconciler sends, with `{$file: path}`
markers rewritten to workspace-relative paths so it is self-contained, and `${...}` references
resolved where their values are known) and a fingerprint: the sha256 of the canonical JSON of what
determines the result (`material`). Webhooks, timeout, retry, lifecycle, labels and descriptions
never enter a fingerprint, so changing them never re-runs a job. A reference whose upstream has
not succeeded with its current spec leaves the fingerprint None ("known after apply"); once the
upstream's outputs are in state the reference resolves and the fingerprint is computed on the
resolved value, so a re-plan after apply converges to "No changes".

Apart from reading the local files a spec names (to hash them), everything here is pure.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobrunner.deployment_changes import outputs_kept
from jobrunner.errors import Diagnostic, ManifestError
from jobrunner.fingerprint import (
    FILE_DIGEST,
    FILE_MARKER,
    FieldFingerprints,
    file_digest,
    fingerprint,
    is_file_marker,
)
from jobrunner.inputs import BatchItem, plain_row, read_batch_items, resolve_relative
from jobrunner.providers.adapter import ProviderAdapter, RequestForm, split_version
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import SUCCEEDED
from jobrunner.redact import redact
from jobrunner.references import REF_RE, dependency_order, find_refs, resolve_refs
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, DesiredJob, Resource
from jobrunner.settled import SettledProof
from jobrunner.state.model import StateDoc

# Request fields passed to the provider that never enter a fingerprint.
PASS_THROUGH_FIELDS = ("webhook", "webhook_events_filter")
MODEL_FIELDS = ("owner", "name", "visibility", "hardware", "description")


def expand(
    resources: Iterable[Resource],
    root: Path,
    outputs: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    state: StateDoc | None = None,
    items: Mapping[str, list[BatchItem]] | None = None,
    settled: Mapping[str, SettledProof] | None = None,
) -> list[DesiredJob]:
    """Every desired unit of `resources`, in dependency order (then manifest order).

    `outputs` maps `Kind/name` to the outputs of upstream resources (default: those recorded in
    `state` for succeeded addresses). With `state`, an upstream's outputs are only used when that
    upstream will not be re-run (its fingerprint is unchanged, or `lifecycle.on_change: keep`), so
    dependents of a training about to be replaced show "known after apply", not stale values; a
    deployment updated in place offers only the outputs the update cannot change.
    `items` maps a PredictionBatch address to its rows as validation already read them
    (`ValidationResult.items`); a batch not in it has its rows read here, unless `settled` holds
    its proof (`jobrunner.settled`): then its jobs are made from that proof (`SettledJob`).
    Raises ManifestError (all problems at once) for unreadable files or batch inputs.
    """
    resources = list(resources)
    known: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (outputs or {}).items()}
    if outputs is None and state is not None:
        known = upstream_outputs(state)
    by_addr = {r.address: r for r in resources}
    models = _declared_models(resources)
    jobs: list[DesiredJob] = []
    diags: list[Diagnostic] = []
    partial: set[str] = set()  # upstreams of which only some outputs are known (deployments updated in place)
    for address in dependency_order(resources):
        res = by_addr[address]
        proof = settled.get(address) if settled else None
        try:
            made = _settled_batch(res, root, proof, state) if proof is not None else _expand_one(
                res, root, known, models, (items or {}).get(address), state.addresses if state is not None else None)
        except ManifestError as err:
            diags.extend(err.diagnostics)
            continue
        made = _mark_missing_outputs(res, made, known, partial)
        if state is not None and res.kind != "Model":
            # Upstreams of references: forget outputs that are about to change.
            outs = _settled_outputs(res, made, state)
            if outs is None:
                known.pop(res.address, None)
            else:
                known[res.address] = outs
                if res.kind == "Deployment" and any(j.fingerprint != _recorded_fp(state, j) for j in made):
                    partial.add(res.address)
        jobs.extend(made)
    if diags:
        raise ManifestError(diags)
    return jobs


def upstream_outputs(state: StateDoc) -> dict[str, dict[str, Any]]:
    """Outputs recorded for every succeeded resource-level address (not batch items; `expand`
    computes a batch's from its items). A success that recorded no outputs is kept (as {}), so a
    reference to it is known to be missing rather than merely not known yet."""
    return {
        addr: dict(st.outputs)
        for addr, st in state.addresses.items()
        if "[" not in addr and (st.status == SUCCEEDED or (st.job_kind == JOB_MODEL and st.outputs))
    }


def _settled_outputs(res: Resource, made: list[DesiredJob], state: StateDoc) -> dict[str, Any] | None:
    """The outputs `res` offers its dependents now, or None while they are not known.

    Known only when every unit of `res` succeeded and will not run again: its fingerprint is
    unchanged, or `lifecycle.on_change: keep` keeps the succeeded run; a deployment updated in
    place offers the outputs the update leaves as they are (`deployment_changes.outputs_kept`). A training's outputs are
    what state recorded; a batch's are `count` (its items) and `output_file` (the workspace-relative
    path of the file apply writes, when the spec sets one).
    """
    keep = str((res.spec.get("lifecycle") or {}).get("on_change", "replace")) == "keep"

    def settled(job: DesiredJob) -> bool:
        prior = state.addresses.get(job.address)
        return prior is not None and prior.status == SUCCEEDED and (
            keep or (job.fingerprint is not None and job.fingerprint == prior.fingerprint))

    if not (made and type(made[0]) is SettledJob) and not all(settled(j) for j in made):
        # (a settled batch's jobs were proven succeeded at their fingerprints: see jobrunner.settled)
        if res.kind == "Deployment":
            # An update in place keeps what it cannot change (its name; the version it serves
            # unless that changes): dependents stay known, and run again only for a new version.
            return outputs_kept(state.addresses.get(res.address), made[0])
        return None
    if res.kind == "PredictionBatch":
        outs: dict[str, Any] = {"count": len(made)}
        if res.spec.get("output_file"):
            here = os.path.dirname(res.file)
            outs["output_file"] = Path(os.path.normpath(os.path.join(here, str(res.spec["output_file"])))).as_posix()
        return outs
    prior = state.addresses.get(res.address)
    return dict(prior.outputs) if prior is not None else None


def _recorded_fp(state: StateDoc, job: DesiredJob) -> str | None:
    prior = state.addresses.get(job.address)
    return prior.fingerprint if prior is not None else None


def _mark_missing_outputs(res: Resource, made: list[DesiredJob], known: Mapping[str, Mapping[str, Any]],
                          partial: Collection[str] = ()) -> list[DesiredJob]:
    """Jobs whose references stay unknown although their upstream settled: say which output is missing.

    `known` holds only upstreams that succeeded and will not run again, so a field absent there
    never arrives by waiting; the plan reports such a job as needing attention instead. An
    upstream in `partial` (a deployment updated in place) lacks the outputs the update changes:
    those arrive after apply, they are not missing.
    """
    if all(j.fingerprint is not None for j in made):
        return made
    missing = tuple(sorted({(r.address, r.field) for r in find_refs(res.spec, "$.spec")
                            if r.address in known and r.address not in partial
                            and known[r.address].get(r.field) is None}))
    if not missing:
        return made
    return [replace(j, missing_outputs=missing) if j.fingerprint is None else j for j in made]


def recorded_inputs(job: DesiredJob) -> dict[str, Any]:
    """What the reconciler stores in `AddressState.inputs`: the redacted fingerprint material.

    The plan diffs it against a new job's material to say what changed ("input.order: 4 -> 5").
    A value holding a known secret is recorded as "(sensitive)" whole: a lookup after a lost create
    treats that as matching anything, where a half-scrubbed string would match nothing.
    """
    recorded: dict[str, Any] = redact(job.material or {}, job.sensitive_paths, whole_values=True)
    return recorded


# --- per kind --------------------------------------------------------------------------------


def _expand_one(
    res: Resource, root: Path, known: Mapping[str, Mapping[str, Any]], models: dict[str, str],
    items: list[BatchItem] | None = None, recorded: Mapping[str, Any] | None = None,
) -> list[DesiredJob]:
    if res.kind == "Model":
        return [_model(res)]
    if res.kind == "Training":
        return [_training(res, root, known, models)]
    if res.kind == "PredictionBatch":
        return _batch(res, root, known, items, recorded)
    if res.kind == "Deployment":
        return [_deployment(res, known)]
    raise ManifestError([Diagnostic("error", res.file, res.line, res.column,
                                    f"unknown kind {res.kind!r}", res.address, "$.kind")])


def _sensitive(res: Resource) -> tuple[str, ...]:
    value = res.spec.get("sensitive") or ()
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else (str(value),)


def _depends(res: Resource, value: Any, extra: Iterable[str] = ()) -> tuple[str, ...]:
    deps = {r.address for r in find_refs(value, "$.spec")} | set(extra)
    deps.discard(res.address)
    return tuple(sorted(deps))


def _declared_models(resources: list[Resource]) -> dict[str, str]:
    """owner/name -> Model/<resource name>, for training destinations declared in the workspace."""
    out: dict[str, str] = {}
    for r in resources:
        if r.kind == "Model":
            owner, name = r.spec.get("owner"), r.spec.get("name", r.name)
            if owner:
                out[f"{owner}/{name}"] = r.address
    return out


def _model(res: Resource) -> DesiredJob:
    spec = res.spec
    request: dict[str, Any] = {"provider": res.provider, "kind": JOB_MODEL}
    for key in MODEL_FIELDS:
        if spec.get(key) is not None:
            request[key] = spec[key]
    request.setdefault("name", res.name)
    material = {k: v for k, v in request.items() if k != "description"}
    return DesiredJob(
        address=res.address,
        resource_address=res.address,
        job_kind=JOB_MODEL,
        provider=res.provider,
        file=res.file,
        request=request,
        fingerprint=fingerprint(material),
        depends_on=(),
        sensitive_paths=_sensitive(res),
        material=material,
    )


def _deployment(res: Resource, known: Mapping[str, Mapping[str, Any]]) -> DesiredJob:
    """The provider's deployment fields (references resolved where known); labels are sent, not fingerprinted."""
    adapter = adapter_for(res.provider)
    form = adapter.deployment
    if form is None:
        raise ManifestError([Diagnostic("error", res.file, res.line, res.column,
                                        f"{adapter.title} serves no deployments", res.address, "$.spec.provider")])
    raw = {k: res.spec[k] for k in (*form.fields, *form.label_fields) if res.spec.get(k) is not None}
    deps = _depends(res, raw)
    resolved, unknown = resolve_refs(raw, {k: dict(v) for k, v in known.items()})
    if adapter.form is RequestForm.VERSIONED:
        resolved["model"], resolved["version"] = split_version(resolved.get("model"), resolved.get("version"))
    resolved = {k: v for k, v in resolved.items() if v is not None}  # e.g. a model the version will name
    head = {"provider": res.provider, "kind": JOB_DEPLOYMENT, "name": res.name}
    material = {**head, **{k: v for k, v in resolved.items() if k not in form.label_fields}}
    return DesiredJob(
        address=res.address,
        resource_address=res.address,
        job_kind=JOB_DEPLOYMENT,
        provider=res.provider,
        file=res.file,
        request={**head, **resolved},
        fingerprint=None if unknown else fingerprint(material),
        depends_on=deps,
        material=material,
    )


# (request, material, depends_on, unknown) of one training, built by its provider's request form.
_TrainingParts = tuple[dict[str, Any], dict[str, Any], tuple[str, ...], bool]


def _training(res: Resource, root: Path, known: Mapping[str, Mapping[str, Any]], models: dict[str, str]) -> DesiredJob:
    adapter = adapter_for(res.provider)
    if adapter.form is RequestForm.PROJECT_BODY:
        request, material, deps, unknown = _project_body_training(res, root, known, adapter)
    else:
        request, material, deps, unknown = _versioned_training(res, root, known, models)
    material = _material(material)
    return DesiredJob(
        address=res.address,
        resource_address=res.address,
        job_kind=JOB_TRAINING,
        provider=res.provider,
        file=res.file,
        request=request,
        fingerprint=None if unknown else fingerprint(material),
        depends_on=deps,
        sensitive_paths=_sensitive(res),
        material=material,
    )


def _project_body_training(res: Resource, root: Path, known: Mapping[str, Mapping[str, Any]],
                           adapter: ProviderAdapter) -> _TrainingParts:
    """A project and a flat request body; only the adapter's result fields enter the fingerprint."""
    spec = res.spec
    body = {k: spec[k] for k in adapter.body_fields if spec.get(k) is not None}
    raw = {"project_id": spec.get("project_id"), "body": body}
    deps = _depends(res, raw)
    resolved, unknown = resolve_refs(raw, dict(known))
    body_req, body_mat = _files(resolved["body"], res, root, ("$.spec",))
    request = {"provider": res.provider, "kind": JOB_TRAINING, "project_id": resolved.get("project_id"),
               "body": body_req}
    material = {
        "provider": res.provider,
        "kind": JOB_TRAINING,
        "project_id": resolved.get("project_id"),
        **{k: v for k, v in body_mat.items() if k in adapter.result_fields},
    }
    return request, material, deps, unknown


def _versioned_training(res: Resource, root: Path, known: Mapping[str, Mapping[str, Any]],
                        models: dict[str, str]) -> _TrainingParts:
    """Model, pinned version, destination and input; webhooks are passed through, never fingerprinted."""
    spec = res.spec
    raw = {k: spec.get(k) for k in ("model", "version", "destination", "input")}
    raw["input"] = raw["input"] or {}
    dest = spec.get("destination")
    deps = _depends(res, raw, [models[dest]] if isinstance(dest, str) and dest in models else [])
    resolved, unknown = resolve_refs(raw, dict(known))
    resolved["model"], resolved["version"] = split_version(resolved.get("model"), resolved.get("version"))
    input_req, input_mat = _files(resolved["input"], res, root, ("$.spec", "input"))
    request = {"provider": res.provider, "kind": JOB_TRAINING, **resolved, "input": input_req}
    for key in PASS_THROUGH_FIELDS:
        if spec.get(key) is not None:
            request[key] = spec[key]
    material = {"provider": res.provider, "kind": JOB_TRAINING, **resolved, "input": input_mat}
    return request, material, deps, unknown


def _batch(res: Resource, root: Path, known: Mapping[str, Mapping[str, Any]],
           items: list[BatchItem] | None = None, recorded: Mapping[str, Any] | None = None) -> list[DesiredJob]:
    """One job per row. `recorded`: state's addresses, whose equal strings the rows' jobs share."""
    spec = res.spec
    if items is None:
        items = read_batch_items(res, root)
    target, release = _batch_target(res)
    head = {k: spec.get(k) for k in ("model", "version")} if not target else {**target, **release}
    # References in rows make the whole batch wait for their upstream too, not only the version's.
    with_refs = [_has_ref(item.input) for item in items]  # one walk per row, used twice
    deps = _depends(res, [head, *(item.input for item, ref in zip(items, with_refs, strict=True) if ref)])
    head, unknown = resolve_refs(head, dict(known))
    model, version = split_version(head.get("model"), head.get("version"))
    # What the rows run on: the version (as always: these fingerprints never change), or a deployment.
    runs_on: dict[str, Any] = {"model": model, "version": version} if not target else {k: head[k] for k in target}
    passthrough = {k: spec[k] for k in PASS_THROUGH_FIELDS if spec.get(k) is not None}
    sensitive = _sensitive(res)
    jobs: list[DesiredJob] = []
    known_map = dict(known)
    # What every row shares, built once (same keys in the same order as built per row before).
    provider, address, file = res.provider, res.address, res.file
    request_head = {"provider": provider, "kind": JOB_PREDICTION, **runs_on}
    material_head = _material({"provider": provider, "kind": JOB_PREDICTION, **runs_on,
                               **{k: head[k] for k in release}})
    row_fingerprint = FieldFingerprints(material_head, "input").of  # the head's JSON encoded once
    for item, has_ref in zip(items, with_refs, strict=True):
        item_input, item_unknown = resolve_refs(item.input, known_map) if has_ref else (item.input, False)
        input_req, input_mat = (item_input, item_input) if plain_row(item_input) else \
            _files(item_input, res, root, ("$.spec", "inputs"), line=item.line, file=item.file)
        material = {**material_head, "input": input_mat} if input_mat is not None else dict(material_head)
        request = {**request_head, "input": input_req, **passthrough}
        item_deps = deps if not item_unknown else tuple(sorted(set(deps) | set(_depends(res, item.input))))
        fp = None if (unknown or item_unknown) else (
            row_fingerprint(input_mat) if input_mat is not None else fingerprint(material))
        job_address, fp = _shared(f"{address}[{item.key}]", fp, recorded)
        jobs.append(DesiredJob(
            address=job_address,
            resource_address=address,
            job_kind=JOB_PREDICTION,
            provider=provider,
            file=file,
            request=request,
            fingerprint=fp,
            depends_on=item_deps,
            sensitive_paths=sensitive,
            material=material,
        ))
    return jobs


class _BatchRows:
    """The rows of a settled batch, read and expanded only when a job's request or material is
    asked for (e.g. a JSON plan shows every request): then all at once, as `_batch` makes them."""

    def __init__(self, res: Resource, root: Path, proof: SettledProof, state: StateDoc | None) -> None:
        self.res, self.root, self.proof, self.state = res, root, proof, state
        self._jobs: dict[str, DesiredJob] | None = None

    def job(self, address: str) -> DesiredJob:
        if self._jobs is None:
            made = _batch(self.res, self.root, {}, None, self.state.addresses if self.state is not None else None)
            self._jobs = {j.address: j for j in made}
        found = self._jobs.get(address)
        if found is None:  # the inputs file changed while this command ran
            raise ManifestError([Diagnostic("error", self.res.file, self.res.line, self.res.column,
                                            f"{address}: its row is gone from the batch's inputs since this "
                                            "command read them; run it again", self.res.address, "$.spec")])
        return found


class SettledJob(DesiredJob):
    """A row of a settled batch (`jobrunner.settled`): every field as `_batch` would make it, the
    fingerprint proven equal to state's; `request` and `material` are read from the rows on first
    use (`_BatchRows`). Built by `_settled_batch`, never by the dataclass constructor (which
    `dataclasses.replace` still may call: a value given then is kept)."""

    rows: _BatchRows

    @property
    def request(self) -> dict[str, Any]:
        given = self.__dict__.get("_request")
        return given if given is not None else self.rows.job(self.address).request

    @request.setter
    def request(self, value: dict[str, Any]) -> None:
        self.__dict__["_request"] = value

    @property
    def material(self) -> dict[str, Any] | None:
        if "_material" in self.__dict__:
            return self.__dict__["_material"]  # type: ignore[no-any-return]
        return self.rows.job(self.address).material

    @material.setter
    def material(self, value: dict[str, Any] | None) -> None:
        self.__dict__["_material"] = value


def _settled_batch(res: Resource, root: Path, proof: SettledProof, state: StateDoc | None) -> list[DesiredJob]:
    """The jobs of a proven settled batch, in manifest order, without reading its rows: what
    `_batch` makes of rows without references, `{$file}` or webhook (the only ones a proof covers)."""
    rows = _BatchRows(res, root, proof, state)
    common = {"resource_address": res.address, "job_kind": JOB_PREDICTION, "provider": res.provider,
              "file": res.file, "depends_on": (), "sensitive_paths": _sensitive(res), "missing_outputs": (),
              "rows": rows}
    new = object.__new__
    jobs: list[DesiredJob] = []
    for address, fp in zip(proof.addresses, proof.fingerprints, strict=True):
        job = new(SettledJob)
        job.__dict__.update(common, address=address, fingerprint=fp)
        jobs.append(job)
    return jobs


def _shared(address: str, fp: str | None, recorded: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(address, fingerprint) as the strings state already holds when they are equal: a re-planned
    batch of 100,000 unchanged rows then holds each once, not twice (some 20 MB)."""
    prior = recorded.get(address) if recorded else None
    if prior is None:
        return address, fp
    if prior.address == address:
        address = prior.address
    if fp is not None and fp == prior.fingerprint:
        fp = prior.fingerprint
    return address, fp


def _batch_target(res: Resource) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what a batch on a deployment runs on, what identifies the deployment's current release).

    Empty for a batch on a version. A Replicate deployment named by `${Deployment.x.output.name}`
    keeps its name when it is updated to a new version, so the version it serves (an output of the
    same deployment) enters the fingerprint: an evaluation runs again after the model behind the
    deployment changed. An Emissary deployment gets a new id when it changes, which is enough.
    """
    spec = res.spec
    if adapter_for(res.provider).form is RequestForm.PROJECT_BODY:
        return {k: spec.get(k) for k in ("project_id", "deployment", "endpoint")}, {}
    deployment = spec.get("deployment")
    if deployment is None:
        return {}, {}
    ref = REF_RE.fullmatch(deployment) if isinstance(deployment, str) else None
    release = ({"deployment_version": f"${{Deployment.{ref['name']}.output.version}}"}
               if ref is not None and ref["kind"] == "Deployment" and ref["field"] == "name" else {})
    return {"deployment": deployment}, release


# --- helpers ---------------------------------------------------------------------------------


def _has_ref(value: Any) -> bool:
    """Cheap test for `${` anywhere in a value (most batch rows have none): one call per container,
    scalars tested in the loop (a call per value was a tenth of a big batch's expansion)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return False
    for v in value:
        if isinstance(v, str):
            if "${" in v:
                return True
        elif isinstance(v, (dict, list)) and _has_ref(v):
            return True
    return False


def _material(value: dict[str, Any]) -> dict[str, Any]:
    """Fingerprint material: absent and null fields are the same thing."""
    return {k: v for k, v in value.items() if v is not None}


def _files(value: Any, res: Resource, root: Path, path: tuple[str | int, ...], *, line: int | None = None,
           file: str | None = None) -> tuple[Any, Any]:
    """(request form, material form) of a value holding `{$file: p}` markers (p relative to the manifest).

    The request form has `{$file: workspace-relative p}` (what the reconciler uploads), the material
    form `{$file_sha256: digest}` (what the fingerprint covers). One walk; a value without markers is
    returned as is, twice, without copying (the common case for thousands of batch rows).
    """
    if isinstance(value, dict):
        if is_file_marker(value):
            rel = value[FILE_MARKER]
            resolved = resolve_relative(res, root, rel)
            digest = _digest_or_error(resolved, rel, res, path, line=line, file=file)
            return {FILE_MARKER: _workspace_relative(resolved, root)}, {FILE_DIGEST: digest}
        req: dict[str, Any] | None = None
        mat: dict[str, Any] | None = None
        for k, v in value.items():
            if not isinstance(v, (dict, list)):
                continue
            r, m = _files(v, res, root, path + (k,), line=line, file=file)
            if r is not v or m is not v:
                if req is None:
                    req, mat = dict(value), dict(value)
                req[k], mat[k] = r, m  # type: ignore[index]
        return (value, value) if req is None else (req, mat)
    if isinstance(value, list):
        pairs = [_files(v, res, root, path + (i,), line=line, file=file) if isinstance(v, (dict, list)) else (v, v)
                 for i, v in enumerate(value)]
        if all(r is v and m is v for (r, m), v in zip(pairs, value, strict=True)):
            return value, value
        return [r for r, _ in pairs], [m for _, m in pairs]
    return value, value


def _json_path(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (p if i == 0 else f".{p}") for i, p in enumerate(path))


def _digest_or_error(path: Path, rel: str, res: Resource, where: tuple[str | int, ...], *, line: int | None,
                     file: str | None) -> str:
    try:
        return file_digest(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        problem = f"file {rel!r} not found (paths in {{$file: ...}} are relative to the manifest's directory)"
    except OSError as exc:
        problem = f"file {rel!r} cannot be read: {exc.strerror}"
    json_path = _json_path(where)
    pos = res.position(json_path)
    if file and line:  # a batch row: point at the row (in the manifest or the inputs file)
        loc_file, loc_line, loc_col = file, line, 1
    else:
        loc_file, loc_line, loc_col = res.file, pos.line, pos.column
    raise ManifestError([Diagnostic("error", loc_file, loc_line, loc_col, problem, res.address, json_path)])


def _workspace_relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(root))).as_posix()
    except ValueError:
        return Path(os.path.normpath(path)).as_posix()


__all__ = [
    "SettledJob",
    "expand",
    "recorded_inputs",
    "split_version",
    "upstream_outputs",
]
