"""The Replicate wire's tables of the local platform: jobs, models, versions and files.

Short statements on the platform's shared SQLite connection (`jobrunner.local.db`); rows come
back as plain dicts with JSON columns decoded. Lists are newest first by `seq`, the order the
Replicate wire pages in.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobrunner.local.db import Database, Row, Table

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    destination TEXT,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    logs TEXT NOT NULL DEFAULT '',
    error TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    deadline TEXT,
    webhook TEXT,
    webhook_events_filter TEXT,
    base_url TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'api',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_kind_seq ON jobs(kind, seq);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    visibility TEXT NOT NULL,
    hardware TEXT NOT NULL,
    github_url TEXT,
    paper_url TEXT,
    license_url TEXT,
    cover_image_url TEXT,
    is_official INTEGER NOT NULL DEFAULT 0,
    run_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE(owner, name)
);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    engine TEXT NOT NULL,
    weights_file TEXT,
    openapi_schema TEXT NOT NULL,
    cog_version TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_model ON versions(owner, name, seq);
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    path TEXT NOT NULL,
    purpose TEXT NOT NULL DEFAULT 'upload'
);
CREATE TABLE IF NOT EXISTS deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    number INTEGER NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    hardware TEXT NOT NULL,
    min_instances INTEGER NOT NULL,
    max_instances INTEGER NOT NULL,
    release_created_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE(owner, name)
);
"""


class ReplicateStore:
    """Every method is one short statement."""

    def __init__(self, db: Database) -> None:
        db.create_tables(SCHEMA)
        self.conn = db.conn
        self._jobs = db.table("jobs", ("input", "output", "metrics", "webhook_events_filter", "extra"))
        self._models = db.table("models")
        self._versions = db.table("versions", ("openapi_schema",))
        self._files = db.table("files", ("metadata",))
        self._deployments = db.table("deployments")
        self._version_cache: dict[str, Row] = {}

    # --- jobs --------------------------------------------------------------------------

    def insert_job(self, job: Row) -> None:
        self._jobs.insert(job)

    def get_job(self, job_id: str) -> Row | None:
        return self._jobs.one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def update_job(self, job_id: str, **values: Any) -> None:
        self._jobs.update("id", job_id, values)

    def append_logs(self, job_id: str, text: str) -> None:
        self.conn.execute("UPDATE jobs SET logs = logs || ? WHERE id = ?", (text, job_id))

    def list_jobs(
        self,
        kind: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        limit: int = 100,
    ) -> list[Row]:
        """Newest first. `before_seq` pages forward (older), `after_seq` pages back (newer)."""
        where = ["kind = ?"]
        args: list[Any] = [kind]
        if created_after is not None:
            where.append("created_at >= ?")
            args.append(created_after)
        if created_before is not None:
            where.append("created_at < ?")
            args.append(created_before)
        return self._page(self._jobs, " AND ".join(where), args, before_seq, after_seq, limit)

    def jobs_with_status(self, statuses: Iterable[str]) -> list[Row]:
        wanted = list(statuses)
        marks = ", ".join("?" * len(wanted))
        return self._jobs.all(f"SELECT * FROM jobs WHERE status IN ({marks})", wanted)

    # --- models and versions ---------------------------------------------------------------

    def insert_model(self, model: Row) -> None:
        self._models.insert(model)

    def get_model(self, owner: str, name: str) -> Row | None:
        return self._models.one("SELECT * FROM models WHERE owner = ? AND name = ?", (owner, name))

    def delete_model(self, owner: str, name: str) -> None:
        self.conn.execute("DELETE FROM models WHERE owner = ? AND name = ?", (owner, name))

    def list_models(
        self, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100
    ) -> list[Row]:
        return self._page(self._models, "1 = 1", [], before_seq, after_seq, limit)

    def count_runs(self, owner: str, name: str) -> int:
        """How many jobs ran this model (counted on read: one write less per create)."""
        row = self.conn.execute("SELECT COUNT(*) FROM jobs WHERE model = ?", (f"{owner}/{name}",)).fetchone()
        return int(row[0])

    def insert_version(self, version: Row) -> None:
        self._versions.insert(version)

    def get_version(self, version_id: str) -> Row | None:
        """Versions are immutable once written, so found ones are kept in memory."""
        cached = self._version_cache.get(version_id)
        if cached is not None:
            return cached
        row = self._versions.one("SELECT * FROM versions WHERE id = ?", (version_id,))
        if row is not None:
            self._version_cache[version_id] = row
        return row

    def delete_version(self, version_id: str) -> None:
        self._version_cache.pop(version_id, None)
        self.conn.execute("DELETE FROM versions WHERE id = ?", (version_id,))

    def latest_version(self, owner: str, name: str) -> Row | None:
        return self._versions.one(
            "SELECT * FROM versions WHERE owner = ? AND name = ? ORDER BY seq DESC LIMIT 1", (owner, name)
        )

    def list_versions(
        self, owner: str, name: str, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100
    ) -> list[Row]:
        return self._page(self._versions, "owner = ? AND name = ?", [owner, name], before_seq, after_seq, limit)

    def jobs_of_version(
        self, version_id: str, statuses: Iterable[str] | None = None, kind: str | None = None
    ) -> list[Row]:
        """Jobs run on `version_id` (optionally only those in `statuses`, or of one kind)."""
        where, args = ["version = ?"], [version_id]
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        return self._jobs.all(f"SELECT * FROM jobs WHERE {' AND '.join(where)}", args)

    def delete_jobs(self, job_ids: list[str]) -> None:
        self.conn.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in job_ids])

    # --- deployments -----------------------------------------------------------------------

    def insert_deployment(self, deployment: Row) -> None:
        self._deployments.insert(deployment)

    def get_deployment(self, owner: str, name: str) -> Row | None:
        return self._deployments.one("SELECT * FROM deployments WHERE owner = ? AND name = ?", (owner, name))

    def update_deployment(self, owner: str, name: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.conn.execute(
            f"UPDATE deployments SET {sets} WHERE owner = ? AND name = ?", [*values.values(), owner, name]
        )

    def delete_deployment(self, owner: str, name: str) -> None:
        self.conn.execute("DELETE FROM deployments WHERE owner = ? AND name = ?", (owner, name))

    def deployments_of_version(self, version_id: str) -> list[Row]:
        return self._deployments.all("SELECT * FROM deployments WHERE version = ?", (version_id,))

    def list_deployments(
        self, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100
    ) -> list[Row]:
        return self._page(self._deployments, "1 = 1", [], before_seq, after_seq, limit)

    # --- files -------------------------------------------------------------------------

    def insert_file(self, file: Row) -> None:
        self._files.insert(file)

    def get_file(self, file_id: str) -> Row | None:
        return self._files.one("SELECT * FROM files WHERE id = ?", (file_id,))

    def delete_file(self, file_id: str) -> None:
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def list_files(self, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100) -> list[Row]:
        return self._page(self._files, "purpose = 'upload'", [], before_seq, after_seq, limit)

    # --- paging ----------------------------------------------------------------------------

    @staticmethod
    def _page(
        table: Table, where: str, args: list[Any], before_seq: int | None, after_seq: int | None, limit: int
    ) -> list[Row]:
        """Newest first; `after_seq` (paging back) reads oldest first and reverses."""
        clauses = [where]
        if before_seq is not None:
            clauses.append("seq < ?")
            args = [*args, before_seq]
        if after_seq is not None:
            clauses.append("seq > ?")
            args = [*args, after_seq]
        order = "ASC" if after_seq is not None else "DESC"
        rows = table.all(
            f"SELECT * FROM {table.name} WHERE {' AND '.join(clauses)} ORDER BY seq {order} LIMIT ?", [*args, limit]
        )
        if order == "ASC":
            rows.reverse()
        return rows
