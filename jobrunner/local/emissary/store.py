"""The Emissary side of the local platform's SQLite file: projects, datasets, training jobs,
checkpoints and deployments.

These tables live in the same database as the Replicate wire's (`replicate.store`) (one file to back up, one
connection owned by the server's event loop) but are separate: the Emissary wire has its own ids
(`ms-`, `ds-`, `tr-`, `dp-` like the SDK's examples), its own status enum and integer epoch-second
timestamps. A training job row points at the platform job (`runner_job_id`) that does the work in
a worker process; its status here is the Emissary view of that job.

Uploaded dataset bytes go to `<data_dir>/emissary/datasets/<dataset id>` under a server-made name:
nothing the client sends ever becomes part of a path.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

from jobrunner.local.db import Database, Row, dumps
from jobrunner.local.emissary.catalog import USER_ID

# The closed status enum of SDK 0.4.4 (TrainingJobSummary.status / TrainingJobDetailStatus).
PENDING, RUNNING, SUCCESS = "Pending", "Running", "Success"
FAILED, TIMED_OUT, CANCELLED = "Failed", "TimedOut", "Cancelled"
TRAINING_STATUSES = (PENDING, RUNNING, SUCCESS, FAILED, TIMED_OUT, CANCELLED)
TERMINAL = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELLED})
DEPLOYING, DEPLOYED = "Deploying", "Deployed"
DEPLOYMENT_STATUSES = (PENDING, DEPLOYING, DEPLOYED, FAILED, CANCELLED, TIMED_OUT)
DEPLOYMENT_TERMINAL = frozenset({FAILED, CANCELLED, TIMED_OUT})

SCHEMA = """
CREATE TABLE IF NOT EXISTS emissary_projects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS emissary_datasets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    name TEXT,
    filename TEXT,
    content_type TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    path TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS emissary_datasets_project ON emissary_datasets(project_id, seq);
CREATE TABLE IF NOT EXISTS emissary_training_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    base_model TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    train_dataset_id TEXT NOT NULL,
    test_dataset_id TEXT,
    train_test_split_ratio REAL,
    parameters TEXT NOT NULL DEFAULT '{}',
    hf_model_link TEXT,
    training_loss TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    runner_job_id TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS emissary_training_jobs_project ON emissary_training_jobs(project_id, seq);
CREATE TABLE IF NOT EXISTS emissary_checkpoints (
    training_job_id TEXT NOT NULL,
    checkpoint INTEGER NOT NULL,
    path TEXT NOT NULL,
    test_results TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (training_job_id, checkpoint)
);
CREATE TABLE IF NOT EXISTS emissary_deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    training_job_id TEXT NOT NULL,
    checkpoint INTEGER NOT NULL,
    server_type TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS emissary_deployments_project ON emissary_deployments(project_id, seq);
"""

def now() -> int:
    """Emissary timestamps are integer epoch seconds."""
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class EmissaryStore:
    """Short statements on the platform's shared SQLite connection."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        db.create_tables(SCHEMA)
        self.conn = db.conn
        self._projects = db.table("emissary_projects")
        self._datasets = db.table("emissary_datasets")
        self._jobs = db.table("emissary_training_jobs", ("parameters", "training_loss"))
        self._checkpoints = db.table("emissary_checkpoints", ("test_results",))
        self._deployments = db.table("emissary_deployments")
        self.dataset_dir = Path(data_dir) / "emissary" / "datasets"
        self.checkpoint_dir = Path(data_dir) / "emissary" / "checkpoints"
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

    # --- projects ------------------------------------------------------------------------

    def create_project(self, name: str | None) -> Row:
        row = {"id": new_id("ms"), "name": name, "created_at": now()}
        self._projects.insert(row)
        return row

    def ensure_project(self, project_id: str, name: str | None) -> Row:
        """The project with this fixed id, created when missing (the platform's seeded project)."""
        row = self.get_project(project_id)
        if row is None:
            row = {"id": project_id, "name": name, "created_at": now()}
            self._projects.insert(row)
        return row

    def get_project(self, project_id: str) -> Row | None:
        return self._projects.one("SELECT * FROM emissary_projects WHERE id = ?", (project_id,))

    def list_projects(self) -> list[Row]:
        return self._projects.all("SELECT * FROM emissary_projects ORDER BY seq DESC", ())

    def delete_project(self, project_id: str) -> None:
        """Deletes the project and everything in it (the caller cancels running jobs first)."""
        for ds in self.list_datasets(project_id):
            self.delete_dataset(ds["id"])
        for job in self.list_training_jobs(project_id):
            self.delete_training_job(job["id"])
        self.conn.execute("DELETE FROM emissary_deployments WHERE project_id = ?", (project_id,))
        self.conn.execute("DELETE FROM emissary_projects WHERE id = ?", (project_id,))

    # --- datasets ------------------------------------------------------------------------

    def create_dataset(
        self, project_id: str, name: str | None, filename: str | None, content_type: str | None, content: bytes | None
    ) -> Row:
        ds_id = new_id("ds")
        path = None
        size = 0
        digest = None
        if content is not None:
            target = self.dataset_dir / ds_id  # server-made name only
            target.write_bytes(content)
            path, size, digest = str(target), len(content), hashlib.sha256(content).hexdigest()
        ts = now()
        row = {
            "id": ds_id,
            "project_id": project_id,
            "name": name if name is not None else filename,
            "filename": filename,
            "content_type": content_type,
            "size": size,
            "sha256": digest,
            "path": path,
            "created_at": ts,
            "updated_at": ts,
        }
        self._datasets.insert(row)
        return row

    def get_dataset(self, project_id: str, dataset_id: str) -> Row | None:
        return self._datasets.one(
            "SELECT * FROM emissary_datasets WHERE id = ? AND project_id = ?", (dataset_id, project_id)
        )

    def list_datasets(self, project_id: str) -> list[Row]:
        return self._datasets.all("SELECT * FROM emissary_datasets WHERE project_id = ? ORDER BY seq DESC",
                                  (project_id,))

    def delete_dataset(self, dataset_id: str) -> None:
        row = self._datasets.one("SELECT * FROM emissary_datasets WHERE id = ?", (dataset_id,))
        if row and row["path"]:
            Path(row["path"]).unlink(missing_ok=True)
        self.conn.execute("DELETE FROM emissary_datasets WHERE id = ?", (dataset_id,))

    # --- training jobs -------------------------------------------------------------------

    def create_training_job(self, project_id: str, body: Row) -> Row:
        ts = now()
        row = {
            "id": new_id("tr"),
            "project_id": project_id,
            "name": body.get("name"),
            "description": body.get("description"),
            "base_model": body["base_model"],
            "status": PENDING,
            "progress": 0,
            "train_dataset_id": body["train_dataset_id"],
            "test_dataset_id": body.get("test_dataset_id"),
            "train_test_split_ratio": body.get("train_test_split_ratio"),
            "parameters": body.get("parameters") or {},
            "hf_model_link": body.get("hf_model_link"),
            "training_loss": [],
            "error": None,
            "runner_job_id": None,
            "created_by": USER_ID,
            "created_at": ts,
            "updated_at": ts,
        }
        self._jobs.insert(row)
        return row

    def get_training_job(self, project_id: str | None, job_id: str) -> Row | None:
        if project_id is None:
            return self._jobs.one("SELECT * FROM emissary_training_jobs WHERE id = ?", (job_id,))
        return self._jobs.one(
            "SELECT * FROM emissary_training_jobs WHERE id = ? AND project_id = ?", (job_id, project_id)
        )

    def list_training_jobs(self, project_id: str) -> list[Row]:
        return self._jobs.all(
            "SELECT * FROM emissary_training_jobs WHERE project_id = ? ORDER BY seq DESC", (project_id,)
        )

    def training_jobs_with_status(self, statuses: tuple[str, ...]) -> list[Row]:
        marks = ", ".join("?" * len(statuses))
        return self._jobs.all(f"SELECT * FROM emissary_training_jobs WHERE status IN ({marks})", statuses)

    def update_training_job(self, job_id: str, **values: Any) -> None:
        values.setdefault("updated_at", now())
        self._jobs.update("id", job_id, values)

    def append_training_loss(self, job_id: str, point: Row) -> None:
        row = self._jobs.one("SELECT training_loss FROM emissary_training_jobs WHERE id = ?", (job_id,))
        if row is not None:
            self.update_training_job(job_id, training_loss=[*row["training_loss"], point])

    def delete_training_job(self, job_id: str) -> None:
        for ck in self.list_checkpoints(job_id):
            Path(ck["path"]).unlink(missing_ok=True)
        self.conn.execute("DELETE FROM emissary_checkpoints WHERE training_job_id = ?", (job_id,))
        self.conn.execute("DELETE FROM emissary_training_jobs WHERE id = ?", (job_id,))

    # --- checkpoints ---------------------------------------------------------------------

    def add_checkpoint(self, job_id: str, checkpoint: int, path: str, test_results: Row) -> None:
        ts = now()
        self.conn.execute(
            "INSERT OR REPLACE INTO emissary_checkpoints"
            " (training_job_id, checkpoint, path, test_results, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, checkpoint, path, dumps(test_results), ts, ts),
        )

    def list_checkpoints(self, job_id: str) -> list[Row]:
        return self._checkpoints.all(
            "SELECT * FROM emissary_checkpoints WHERE training_job_id = ? ORDER BY checkpoint", (job_id,)
        )

    def get_checkpoint(self, job_id: str, checkpoint: int) -> Row | None:
        return self._checkpoints.one(
            "SELECT * FROM emissary_checkpoints WHERE training_job_id = ? AND checkpoint = ?", (job_id, checkpoint)
        )

    # --- deployments ---------------------------------------------------------------------

    def create_deployment(self, project_id: str, body: Row, status: str) -> Row:
        ts = now()
        row = {
            "id": new_id("dp"),
            "project_id": project_id,
            "name": body.get("name"),
            "description": body.get("description"),
            "training_job_id": body["training_job_id"],
            "checkpoint": int(body["checkpoint"]),
            "server_type": body.get("server_type"),
            "status": status,
            "created_at": ts,
            "updated_at": ts,
        }
        self._deployments.insert(row)
        return row

    def get_deployment(self, project_id: str, deployment_id: str) -> Row | None:
        return self._deployments.one(
            "SELECT * FROM emissary_deployments WHERE id = ? AND project_id = ?", (deployment_id, project_id)
        )

    def deployment(self, deployment_id: str) -> Row | None:
        """A deployment by id alone (background work that outlives its request)."""
        return self._deployments.one("SELECT * FROM emissary_deployments WHERE id = ?", (deployment_id,))

    def deployments_with_status(self, statuses: tuple[str, ...]) -> list[Row]:
        marks = ", ".join("?" * len(statuses))
        return self._deployments.all(f"SELECT * FROM emissary_deployments WHERE status IN ({marks})", statuses)

    def list_deployments(self, project_id: str) -> list[Row]:
        return self._deployments.all("SELECT * FROM emissary_deployments WHERE project_id = ? ORDER BY seq DESC",
                                     (project_id,))

    def update_deployment(self, deployment_id: str, **values: Any) -> None:
        values.setdefault("updated_at", now())
        self._deployments.update("id", deployment_id, values)

    def delete_deployment(self, deployment_id: str) -> None:
        self.conn.execute("DELETE FROM emissary_deployments WHERE id = ?", (deployment_id,))
