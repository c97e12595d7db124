"""`jobrunner import --discover`: adopt jobs that were run by hand.

Teams start by running trainings and predictions by hand (a notebook, the web UI, curl). To bring
them under jobrunner, `import --discover` lists the providers' recent jobs, keeps those no state
address has ever recorded, writes manifests that declare exactly what they ran (like Terraform's
`-generate-config-out`), and records them in state under the new addresses. The next `plan` of
those manifests shows no changes; from then on they are edited and applied like any other.

Mapping, per provider (all from the job as the provider reports it, never guessed; trainings by
the provider adapter's `discovered_training`):

- Replicate / local training -> a `Training` with model, version, destination and input.
- Replicate / local predictions -> one `PredictionBatch` per (model, version), one inline item
  per prediction keyed by its remote id, so each prediction is one address `...[<id>]`.
- Emissary training job -> a `Training` with the request body fields the job echoes
  (base_model, train_dataset_id, test_dataset_id, description, parameters).

A job that matches a job the current manifests already declare is not given a second manifest:
the report names the address and the `jobrunner import ADDRESS ID` that adopts it. Jobs that cannot
be written as a manifest (no pinned version, a training whose destination is not known yet, an
input with a field named `key`) are listed with the reason and left alone.

The pure part (`build_manifests`) turns remote jobs into manifest documents; the I/O part lists
providers and records state.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from jobrunner.errors import UsageError
from jobrunner.providers.adapter import split_version
from jobrunner.providers.adapters import adapter_for, find_adapter
from jobrunner.providers.base import RemoteJob
from jobrunner.providers.names import PROVIDER_NAMES
from jobrunner.resources import API_VERSION, JOB_PREDICTION, JOB_TRAINING

_DNS_BAD = re.compile(r"[^a-z0-9-]+")


@dataclass
class Candidate:
    """A remote job no state address owns."""

    provider: str
    job: RemoteJob


@dataclass
class Generated:
    """Manifests written for candidates, and what was left out and why."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    # address -> (provider, remote id) for every job a document declares
    addresses: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (remote id, why)


def dns_label(text: str, limit: int = 63) -> str:
    """`text` as a DNS label (metadata.name): lower case, [a-z0-9-], starts with a letter."""
    label = _DNS_BAD.sub("-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)
    if not label or not label[0].isalpha():
        label = f"job-{label}".rstrip("-")
    return label[:limit].rstrip("-")


def _model_name(model: str | None) -> str:
    return (model or "model").rsplit("/", 1)[-1]


def _created(job: RemoteJob) -> str:
    from jobrunner.timestamps import to_rfc3339

    return to_rfc3339(job.created_at, timespec="seconds") if job.created_at else "unknown time"


def _version_id(job: RemoteJob) -> str | None:
    return split_version(None, job.version or "")[1] or None


def build_manifests(candidates: list[Candidate], *, taken: Collection[str] = frozenset()) -> Generated:
    """Manifest documents declaring `candidates` (pure). `taken`: resource addresses already in use."""
    out = Generated()
    used = set(taken)

    def unique(kind: str, base: str) -> str:
        name, n = dns_label(base), 2
        while f"{kind}/{name}" in used:
            name = f"{dns_label(base, 60)}-{n}"
            n += 1
        used.add(f"{kind}/{name}")
        return name

    trainings = sorted((c for c in candidates if c.job.job_kind == JOB_TRAINING), key=_order)
    predictions = sorted((c for c in candidates if c.job.job_kind == JOB_PREDICTION), key=_order)

    for c in trainings:
        job = c.job
        declared, why = adapter_for(c.provider).discovered_training(c.provider, job)
        if declared is None:
            out.skipped.append((job.id, why or "cannot be written as a manifest"))
            continue
        name = unique("Training", f"{_model_name(job.model)}-{job.id[:10]}")
        out.documents.append(_document("Training", name, declared, [job]))
        out.addresses[f"Training/{name}"] = (c.provider, job.id)

    batches: dict[tuple[str, str | None, str], list[RemoteJob]] = {}
    for c in predictions:
        job = c.job
        version = _version_id(job)
        if not version:
            out.skipped.append((job.id, "the prediction names no model version (official models cannot be pinned)"))
            continue
        if "key" in (job.input or {}):
            out.skipped.append((job.id, "its input has a field named `key`, which manifests use to name items"))
            continue
        batches.setdefault((c.provider, job.model, version), []).append(job)
    for (provider, model, version), jobs in batches.items():
        spec: dict[str, Any] = {"provider": provider}
        if model:
            spec["model"] = model
        spec["version"] = version
        spec["inputs"] = [{"key": j.id, **(j.input or {})} for j in jobs]
        name = unique("PredictionBatch", f"{_model_name(model)}-{version[:8]}")
        out.documents.append(_document("PredictionBatch", name, spec, jobs))
        for j in jobs:
            out.addresses[f"PredictionBatch/{name}[{j.id}]"] = (provider, j.id)
    return out


def _order(c: Candidate) -> tuple:
    far_past = datetime.min.replace(tzinfo=UTC)
    return (c.provider, c.job.created_at or far_past, c.job.id)


def _document(kind: str, name: str, spec: dict[str, Any], jobs: list[RemoteJob]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec,
            "_jobs": [(j.id, j.status, _created(j)) for j in jobs]}


def render_documents(generated: Generated, *, since: str, now: datetime | None = None) -> str:
    """The manifests as one multi-document YAML file, each with a comment naming its jobs."""
    now = now or datetime.now(UTC)
    parts = [
        f"# Written by `jobrunner import --discover --since {since}` on {now.strftime('%Y-%m-%d %H:%M UTC')}:\n"
        "# jobs that ran outside jobrunner, declared as they ran and recorded in state under these\n"
        "# addresses: keep their names (a name is the address state knows them by); moving them to\n"
        "# another file is fine. `jobrunner plan` shows no changes for them.\n"
    ]
    for doc in generated.documents:
        jobs = doc["_jobs"]
        body = {k: v for k, v in doc.items() if k != "_jobs"}
        if len(jobs) == 1:
            remote_id, status, created = jobs[0]
            head = f"# remote job {remote_id} ({status}, created {created})\n"
        else:
            head = f"# {len(jobs)} predictions, items keyed by remote id ({jobs[0][2]} to {jobs[-1][2]})\n"
        parts.append(head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100))
    return parts[0] + "---\n".join(parts[1:])


# --- I/O: listing providers, recording state ---------------------------------------------------


def parse_since(text: str) -> timedelta:
    from jobrunner.durations import DurationError, parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except DurationError as exc:
        raise UsageError(f"--since: {exc}", hint="e.g. --since 30d, --since 12h") from None


async def list_unowned(pool: Any, providers: list[str], claimed: set[str], since: datetime,
                       project_ids: set[str]) -> list[Candidate]:
    """Jobs created since `since` on `providers` whose ids no state address has recorded."""
    found: list[Candidate] = []
    for name in providers:
        provider = pool.get(name)
        adapter = adapter_for(name)
        caps = adapter.capabilities
        kinds = [k for k in (JOB_TRAINING, JOB_PREDICTION) if k in adapter.job_kinds]
        if not caps.project_scoped:
            for kind in kinds:
                async for job in provider.list(kind, since=since):
                    if job.id not in claimed:
                        if caps.list_returns_summaries or job.extra.get("partial"):  # fetch the whole job
                            job = await provider.get(kind, job.id)
                        found.append(Candidate(name, job))
            continue
        projects = set(project_ids)  # project_scoped: the adapter says its client has `list_projects`
        projects.update(str(p["id"]) for p in await provider.list_projects() if p.get("id"))
        for project in sorted(projects):
            for kind in kinds:
                async for job in provider.list(kind, since=since, project_id=project):
                    if job.id not in claimed:
                        if caps.list_returns_summaries or job.extra.get("partial"):  # the detail names the datasets
                            job = await provider.get(kind, job.id, project_id=project)
                        found.append(Candidate(name, job))
    return found


def adopt(doc: Any, job: Any, spec: dict[str, Any], remote: RemoteJob) -> bool:
    """Record `remote` as the run of desired `job` in state `doc` if it matches; True when it did."""
    from jobrunner.reconcile import requests as rq
    from jobrunner.reconcile.matching import matches
    from jobrunner.reconcile.outputs import record_adoption

    if job.fingerprint is None or not matches(remote, rq.create_request(job, spec)):
        return False
    record_adoption(doc, job, remote)
    return True


def run_discover(*, paths: tuple[str, ...], since_text: str, providers: tuple[str, ...], out: str,
                 echo: Any) -> int:
    """The `import --discover` command body (see the module docstring)."""
    import asyncio

    from jobrunner.exitcodes import ExitCode
    from jobrunner.reconcile.planning import expand_desired, load_resources, open_workspace, resolve_paths
    from jobrunner.reconcile.pool import ProviderPool
    from jobrunner.refresh import claimed_ids

    ws = open_workspace()
    out_path = Path(out) if Path(out).is_absolute() else Path.cwd() / out
    if out_path.exists():
        raise UsageError(f"{out}: already exists; refusing to overwrite it",
                         hint="name a new file with --out (discovered manifests are written once)")
    since = parse_since(since_text)
    resources, _, _ = load_resources(resolve_paths(paths, ws.root), ws.root)
    by_res = {r.address: r for r in resources}

    with ws.store.lock("import --discover"):
        doc = ws.store.load()
        chosen = list(providers) or sorted({st.provider for st in doc.addresses.values()}
                                           | {r.provider for r in resources})
        chosen = [p for p in chosen if find_adapter(p) is not None]
        if not chosen:
            raise UsageError("no provider to look at: the manifests and state name none",
                             hint=f"name one with --provider {'|'.join(PROVIDER_NAMES)}")
        projects = {str(r.spec["project_id"]) for r in resources if r.spec.get("project_id")}
        projects |= {st.project_id for st in doc.addresses.values() if st.project_id}
        # Declared jobs not yet tracked (or only as an intent): a remote job matching one of them
        # is adopted into that address, never given a second manifest.
        desired = [j for j in expand_desired(resources, ws.root, doc)
                   if j.address not in doc.addresses or not doc.addresses[j.address].remote_id]

        async def run() -> int:
            pool = ProviderPool(ws.config, ws.root)
            try:
                cutoff = datetime.now(UTC) - since
                candidates = await list_unowned(pool, chosen, claimed_ids(doc), cutoff, projects)
            finally:
                await pool.aclose()
            declared, fresh = _split_declared(candidates, desired, by_res)
            generated = build_manifests(fresh, taken=set(by_res))
            _report(echo, chosen, since_text, candidates, declared, generated, out)
            if not generated.documents:
                return ExitCode.OK
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(render_documents(generated, since=since_text), encoding="utf-8")
            adopted, unmatched = _adopt_generated(ws, doc, out_path, generated, candidates)
            if adopted:
                ws.store.save(doc)
            echo(f"Wrote {len(generated.documents)} manifest(s) to {out}; recorded {adopted} job(s) in state.")
            for address, why in unmatched:
                echo(f"  not recorded: {address}: {why}")
            echo(f"Next: review {out}, commit it, and `jobrunner plan` (it shows no changes for these).")
            return ExitCode.OK

        return asyncio.run(run())


def _split_declared(candidates: list[Candidate], desired: list[Any],
                    by_res: dict[str, Any]) -> tuple[list[tuple[str, str]], list[Candidate]]:
    """(address, remote id) of the jobs the current manifests already declare (adopt them with
    `import ADDRESS ID`, no new manifest), and the candidates that need one. Each declared job
    takes at most one remote job."""
    from jobrunner.reconcile import requests as rq
    from jobrunner.reconcile.matching import matches

    desired = list(desired)
    declared: list[tuple[str, str]] = []
    fresh: list[Candidate] = []
    for c in candidates:
        hit = next((j for j in desired if j.provider == c.provider and j.fingerprint is not None
                    and matches(c.job, rq.create_request(j, by_res[j.resource_address].spec))), None)
        if hit is not None:
            declared.append((hit.address, c.job.id))
            desired.remove(hit)
        else:
            fresh.append(c)
    return declared, fresh


def _adopt_generated(ws: Any, doc: Any, path: Path, generated: Generated,
                     candidates: list[Candidate]) -> tuple[int, list[tuple[str, str]]]:
    """Validate the written manifests like any others, then record each job under its address."""
    from jobrunner.errors import ManifestError
    from jobrunner.reconcile.planning import expand_desired, load_resources

    try:
        resources, _, _ = load_resources([path], ws.root)
    except ManifestError as exc:
        return 0, [(a, f"the written manifest does not validate: {exc.message.splitlines()[0]}")
                   for a in generated.addresses]
    specs = {r.address: r.spec for r in resources}
    jobs = {j.address: j for j in expand_desired(resources, ws.root, doc)}
    remote_by_id = {c.job.id: c.job for c in candidates}
    adopted, unmatched = 0, []
    for address, (_provider, remote_id) in sorted(generated.addresses.items()):
        job = jobs.get(address)
        if job is None:
            unmatched.append((address, "not found in the written manifest"))
        elif adopt(doc, job, specs[job.resource_address], remote_by_id[remote_id]):
            adopted += 1
        else:
            unmatched.append((address, f"remote job {remote_id} does not match its manifest"))
    return adopted, unmatched


def _report(echo: Any, providers: list[str], since: str, candidates: list[Candidate],
            declared: list[tuple[str, str]], generated: Generated, out: str) -> None:
    echo(f"Looked at {', '.join(providers)} for jobs created in the last {since}: "
         f"{len(candidates)} not tracked in state.")
    for address, remote_id in sorted(declared):
        echo(f"  {remote_id} is what {address} declares: adopt it with `jobrunner import {address} {remote_id}`")
    for remote_id, why in generated.skipped:
        echo(f"  skipped {remote_id}: {why}")
    for address, (provider, remote_id) in sorted(generated.addresses.items()):
        echo(f"  {address} <= {provider} {remote_id}")
