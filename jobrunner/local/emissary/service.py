"""The Emissary wire's service on the local platform: projects, training jobs, deployments.

Training with base model `jobrunner-ngram` runs the `ngram_finetune` engine in the platform's
worker processes (see `jobrunner.local.engines.ngram_finetune` for the parameters). A training job
whose `parameters.timeout_seconds` elapses is stopped and marked `TimedOut`. Jobs that were
`Pending` or `Running` when the server stopped come back as `Failed`.

Every platform has the project `catalog.SEEDED_PROJECT_ID` (`ms-local`), seeded at start when
missing, so a manifest can train offline without creating a project first.

Deployments serve a checkpoint: `Pending -> Deploying -> Deployed` once its weights are loaded;
completions generate text with them (`max_new_tokens` characters, `temperature`,
`do_sample: false` for greedy decoding, and a `seed` extension for reproducible text).

Nothing here knows HTTP: `routes` parses requests and renders rows with `serializers`; failures
are raised as `errors.EmissaryError`.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from jobrunner.local.db import Row
from jobrunner.local.emissary import catalog
from jobrunner.local.emissary import store as es
from jobrunner.local.emissary.errors import EmissaryError, not_found
from jobrunner.local.engines import ngram, ngram_finetune
from jobrunner.local.platform import Platform

log = logging.getLogger("jobrunner.local.emissary")

# Runner/engine events -> Emissary status.
_FINAL = {"done": es.SUCCESS, "failed": es.FAILED, "canceled": es.CANCELLED}


class EmissaryService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = es.EmissaryStore(platform.db, platform.data_dir)
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self._weights: dict[str, Any] = {}  # deployment id -> loaded checkpoint weights
        self.store.ensure_project(catalog.SEEDED_PROJECT_ID, catalog.SEEDED_PROJECT_NAME)
        self._recover_after_restart()
        platform.on_shutdown(self._close)

    # -- lifecycle --

    def _recover_after_restart(self) -> None:
        """Jobs that were Pending/Running when the server stopped cannot resume: mark them Failed."""
        for job in self.store.training_jobs_with_status((es.PENDING, es.RUNNING)):
            self.store.update_training_job(
                job["id"], status=es.FAILED,
                error="the local platform stopped while this training job was pending or running; create it again",
            )
        # Deploying is only loading a checkpoint, which is done again on first use after a restart.
        for row in self.store.deployments_with_status((es.PENDING, es.DEPLOYING)):
            ok = self.store.get_checkpoint(row["training_job_id"], row["checkpoint"]) is not None
            self.store.update_deployment(row["id"], status=es.DEPLOYED if ok else es.FAILED)

    def _close(self) -> None:
        for handle in self._timeouts.values():
            handle.cancel()
        self._timeouts.clear()

    # -- lookups (404 when missing) --

    def project(self, project_id: str) -> Row:
        p = self.store.get_project(project_id)
        if p is None:
            raise not_found(f"project {project_id}")
        return p

    def training_job(self, project_id: str, job_id: str) -> Row:
        self.project(project_id)
        j = self.store.get_training_job(project_id, job_id)
        if j is None:
            raise not_found(f"training job {job_id}")
        return j

    def dataset(self, project_id: str, dataset_id: str) -> Row:
        p = self.project(project_id)
        d = self.store.get_dataset(p["id"], dataset_id)
        if d is None:
            raise not_found(f"dataset {dataset_id}")
        return d

    def checkpoint(self, project_id: str, job_id: str, n: int) -> Row:
        j = self.training_job(project_id, job_id)
        c = self.store.get_checkpoint(j["id"], n)
        if c is None:
            raise not_found(f"checkpoint {n} of training job {j['id']}")
        return c

    def deployment(self, project_id: str, deployment_id: str) -> Row:
        p = self.project(project_id)
        d = self.store.get_deployment(p["id"], deployment_id)
        if d is None:
            raise not_found(f"deployment {deployment_id}")
        return d

    # -- projects --

    def delete_project(self, project: Row) -> None:
        for job in self.store.list_training_jobs(project["id"]):
            self.cancel_training(job)
        self.store.delete_project(project["id"])

    # -- training jobs --

    def create_training_job(self, project: Row, body: dict[str, Any]) -> Row:
        """Check what the body refers to, store the job (`Pending`) and queue it. The body's
        shape is already checked (`serializers.check_training_body`)."""
        pid = project["id"]
        if body["base_model"] not in catalog.BASE_MODELS:
            raise EmissaryError(400, f"unknown base_model {body['base_model']!r}; "
                                     f"available: {', '.join(catalog.BASE_MODELS)}")
        for key in ("train_dataset_id", "test_dataset_id"):
            if key == "train_dataset_id" or body.get(key):
                ds = self.store.get_dataset(pid, body[key])
                if ds is None or not ds["path"]:
                    raise EmissaryError(400, f"{key} {body[key]!r} is not an uploaded dataset of project {pid}")
        params = body.get("parameters") or {}
        try:
            ngram_finetune.training_parameters(params)
            if "timeout_seconds" in params and float(params["timeout_seconds"]) <= 0:
                raise ValueError("parameters.timeout_seconds must be positive")
        except ValueError as exc:
            raise EmissaryError(400, str(exc)) from None
        job = self.store.create_training_job(pid, body)
        self._start_training(job)
        return job

    def _start_training(self, job: Row) -> None:
        train = self.store.get_dataset(job["project_id"], job["train_dataset_id"])
        test = self.store.get_dataset(job["project_id"], job["test_dataset_id"]) if job["test_dataset_id"] else None
        assert train is not None and train["path"]
        context = {
            "train_path": train["path"],
            "test_path": test["path"] if test else None,
            "checkpoint_dir": str(self.store.checkpoint_dir / job["id"]),
        }
        job_input = {"parameters": job["parameters"], "train_test_split_ratio": job["train_test_split_ratio"]}
        job_id = job["id"]
        self.platform.runner.submit(
            job_id, catalog.ENGINE, "train", job_input, lambda kind, data: self._on_event(job_id, kind, data), context
        )
        timeout = (job["parameters"] or {}).get("timeout_seconds")
        if timeout is not None:
            handle = asyncio.get_running_loop().call_later(float(timeout), self._time_out, job_id)
            self._timeouts[job_id] = handle

    def _on_event(self, job_id: str, kind: str, data: Any) -> None:
        job = self.store.get_training_job(None, job_id)
        if job is None or job["status"] in es.TERMINAL:
            return  # deleted, cancelled or timed out meanwhile
        if kind == "start":
            self.store.update_training_job(job_id, status=es.RUNNING)
        elif kind == "progress":
            pct = max(0, min(100, int(float(data) * 100)))
            if pct != job["progress"]:
                self.store.update_training_job(job_id, progress=pct)
        elif kind == "training_loss":
            point = {"timestamp": float(data["timestamp"]), "loss": float(data["loss"])}
            self.store.append_training_loss(job_id, point)
        elif kind == "checkpoint":
            results = ngram_finetune.test_results(data["metrics"], None)
            self.store.add_checkpoint(job_id, int(data["checkpoint"]), data["path"], results)
        elif kind in _FINAL:
            self._finish(job_id, kind, data)
        # `log` lines are not part of the Emissary wire; engines' logs go to the server log only.
        elif kind == "log":
            log.debug("%s: %s", job_id, str(data).rstrip())

    def _finish(self, job_id: str, kind: str, data: Any) -> None:
        values: dict[str, Any] = {"status": _FINAL[kind]}
        if kind == "done":
            values["progress"] = 100
        elif kind == "failed":
            values["error"] = str(data.get("error") or "training failed")
        self.store.update_training_job(job_id, **values)
        handle = self._timeouts.pop(job_id, None)
        if handle is not None:
            handle.cancel()

    def _time_out(self, job_id: str) -> None:
        self._timeouts.pop(job_id, None)
        job = self.store.get_training_job(None, job_id)
        if job is None or job["status"] in es.TERMINAL:
            return
        self.store.update_training_job(job_id, status=es.TIMED_OUT, error="parameters.timeout_seconds elapsed")
        self.platform.runner.cancel(job_id)

    def cancel_training(self, job: Row) -> None:
        if job["status"] in es.TERMINAL:
            return  # idempotent: cancelling a finished job changes nothing
        self.store.update_training_job(job["id"], status=es.CANCELLED)
        self.platform.runner.cancel(job["id"])
        handle = self._timeouts.pop(job["id"], None)
        if handle is not None:
            handle.cancel()

    def delete_training_job(self, job: Row) -> None:
        self.cancel_training(job)
        self.store.delete_training_job(job["id"])

    # -- deployments (serving a checkpoint) --

    def create_deployment(self, project: Row, body: dict[str, Any]) -> Row:
        """Store a `Pending` deployment of an existing checkpoint and start loading it. The body's
        shape is already checked (`serializers.check_deployment_body`)."""
        job = self.store.get_training_job(project["id"], body["training_job_id"])
        if job is None:
            raise EmissaryError(400, f"training_job_id {body['training_job_id']!r} "
                                     f"is not a training job of project {project['id']}")
        if self.store.get_checkpoint(job["id"], int(body["checkpoint"])) is None:
            raise EmissaryError(400, f"training job {job['id']} has no checkpoint {int(body['checkpoint'])}")
        row = self.store.create_deployment(project["id"], body, es.PENDING)
        self.platform.spawn(self._deploy(row["id"]))
        return row

    async def _deploy(self, deployment_id: str) -> None:
        """Pending -> Deploying -> Deployed once the checkpoint's weights are loaded (or Failed)."""
        row = self.store.deployment(deployment_id)
        if row is None or row["status"] != es.PENDING:
            return
        self.store.update_deployment(deployment_id, status=es.DEPLOYING)
        ck = self.store.get_checkpoint(row["training_job_id"], row["checkpoint"])
        try:
            if ck is None:
                raise FileNotFoundError("the checkpoint was deleted")
            weights = await asyncio.to_thread(_load_json, ck["path"])
        except (OSError, ValueError) as exc:
            self._set_deployment_status(deployment_id, es.FAILED)
            log.warning("deployment %s failed: %s", deployment_id, exc)
            return
        if self._set_deployment_status(deployment_id, es.DEPLOYED, only_from=es.DEPLOYING):
            self._weights[deployment_id] = weights

    def _set_deployment_status(self, deployment_id: str, status: str, *, only_from: str | None = None) -> bool:
        row = self.store.deployment(deployment_id)
        if row is None or (only_from is not None and row["status"] != only_from):
            return False
        self.store.update_deployment(deployment_id, status=status)
        return True

    def delete_deployment(self, deployment: Row) -> None:
        self._weights.pop(deployment["id"], None)
        self.store.delete_deployment(deployment["id"])

    def cancel_deployment(self, deployment: Row) -> None:
        if deployment["status"] not in es.DEPLOYMENT_TERMINAL:
            self._weights.pop(deployment["id"], None)
            self.store.update_deployment(deployment["id"], status=es.CANCELLED)

    def serving_weights(self, deployment: Row) -> Any:
        """The loaded weights of a `Deployed` deployment (400 otherwise)."""
        d = deployment
        if d["status"] != es.DEPLOYED:
            raise EmissaryError(400, f"deployment {d['id']} is {d['status']}, not Deployed")
        weights = self._weights.get(d["id"])
        if weights is None:  # after a restart: weights are loaded again on first use
            ck = self.store.get_checkpoint(d["training_job_id"], d["checkpoint"])
            try:
                weights = _load_json(ck["path"]) if ck else None
            except (OSError, ValueError):
                weights = None
            if weights is None:
                self.store.update_deployment(d["id"], status=es.FAILED)
                raise EmissaryError(400, f"deployment {d['id']} failed: its checkpoint is gone")
            self._weights[d["id"]] = weights
        return weights

    async def generate(self, weights: Any, prompt: str, options: dict[str, Any]) -> str:
        """Text from a deployment's weights, off the event loop (`serializers.generation_options`)."""
        return await asyncio.to_thread(ngram.generate, weights, prompt, **options)

    async def embed(self, weights: Any, *texts: str) -> list[list[float]]:
        """The n-gram model's embedding of each text (`ngram.embed`), off the event loop."""
        return await asyncio.to_thread(lambda: [ngram.embed(weights, t) for t in texts])


def _load_json(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.load(fh)
