"""SQLite persistence of the local platform: jobs, models, versions and files.

One connection, owned by the server's event loop thread (every call is a short, indexed statement,
so it runs inline rather than in a thread). WAL journal with `synchronous=NORMAL`: a committed job
survives a crash of the server process, which is what clients that reconcile after a dropped
connection rely on. Rows come back as plain dicts with JSON columns decoded.

Other wire formats (the Emissary routes) keep their own tables in the same file through
`Database.conn`; they must create them with `CREATE TABLE IF NOT EXISTS`.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

Row = dict[str, Any]

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
"""

_JSON_COLUMNS = {
    "jobs": ("input", "output", "metrics", "webhook_events_filter", "extra"),
    "models": (),
    "versions": ("openapi_schema",),
    "files": ("metadata",),
}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Database:
    """The platform's SQLite file; every method is one short statement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)
        self._versions: dict[str, Row] = {}

    def close(self) -> None:
        self.conn.close()

    # --- generic helpers ---------------------------------------------------------------

    def _decode(self, table: str, row: sqlite3.Row | None) -> Row | None:
        if row is None:
            return None
        out = dict(row)
        for col in _JSON_COLUMNS[table]:
            if out.get(col) is not None:
                out[col] = json.loads(out[col])
        return out

    def _insert(self, table: str, values: Row) -> None:
        cols = list(values)
        encoded = [
            _dumps(values[c]) if c in _JSON_COLUMNS[table] and values[c] is not None else values[c]
            for c in cols
        ]
        self.conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", encoded
        )

    def _update(self, table: str, key: str, key_value: Any, values: Row) -> None:
        if not values:
            return
        cols = list(values)
        encoded = [
            _dumps(values[c]) if c in _JSON_COLUMNS[table] and values[c] is not None else values[c]
            for c in cols
        ]
        self.conn.execute(
            f"UPDATE {table} SET {', '.join(c + ' = ?' for c in cols)} WHERE {key} = ?",
            [*encoded, key_value],
        )

    # --- jobs --------------------------------------------------------------------------

    def insert_job(self, job: Row) -> None:
        self._insert("jobs", job)

    def get_job(self, job_id: str) -> Row | None:
        return self._decode("jobs", self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def update_job(self, job_id: str, **values: Any) -> None:
        self._update("jobs", "id", job_id, values)

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
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        if after_seq is not None:
            where.append("seq > ?")
            args.append(after_seq)
        if created_after is not None:
            where.append("created_at >= ?")
            args.append(created_after)
        if created_before is not None:
            where.append("created_at < ?")
            args.append(created_before)
        order = "ASC" if after_seq is not None else "DESC"
        rows = self.conn.execute(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?", [*args, limit]
        ).fetchall()
        decoded = [self._decode("jobs", r) for r in rows]
        if order == "ASC":
            decoded.reverse()
        return decoded  # type: ignore[return-value]

    def jobs_with_status(self, statuses: Iterable[str]) -> list[Row]:
        wanted = list(statuses)
        marks = ", ".join("?" * len(wanted))
        rows = self.conn.execute(f"SELECT * FROM jobs WHERE status IN ({marks})", wanted).fetchall()
        return [self._decode("jobs", r) for r in rows]  # type: ignore[misc]

    # --- models and versions ---------------------------------------------------------------

    def insert_model(self, model: Row) -> None:
        self._insert("models", model)

    def get_model(self, owner: str, name: str) -> Row | None:
        return self._decode(
            "models", self.conn.execute("SELECT * FROM models WHERE owner = ? AND name = ?", (owner, name)).fetchone()
        )

    def list_models(self, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100) -> list[Row]:
        return self._page("models", "1 = 1", [], before_seq, after_seq, limit)

    def count_runs(self, owner: str, name: str) -> int:
        """How many jobs ran this model (counted on read: one write less per create)."""
        row = self.conn.execute("SELECT COUNT(*) FROM jobs WHERE model = ?", (f"{owner}/{name}",)).fetchone()
        return int(row[0])

    def insert_version(self, version: Row) -> None:
        self._insert("versions", version)

    def get_version(self, version_id: str) -> Row | None:
        """Versions are immutable once written, so found ones are kept in memory."""
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        row = self._decode("versions", self.conn.execute("SELECT * FROM versions WHERE id = ?", (version_id,)).fetchone())
        if row is not None:
            self._versions[version_id] = row
        return row

    def latest_version(self, owner: str, name: str) -> Row | None:
        row = self.conn.execute(
            "SELECT * FROM versions WHERE owner = ? AND name = ? ORDER BY seq DESC LIMIT 1", (owner, name)
        ).fetchone()
        return self._decode("versions", row)

    def list_versions(
        self, owner: str, name: str, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100
    ) -> list[Row]:
        return self._page("versions", "owner = ? AND name = ?", [owner, name], before_seq, after_seq, limit)

    # --- files -------------------------------------------------------------------------

    def insert_file(self, file: Row) -> None:
        self._insert("files", file)

    def get_file(self, file_id: str) -> Row | None:
        return self._decode("files", self.conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone())

    def delete_file(self, file_id: str) -> None:
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def list_files(self, *, before_seq: int | None = None, after_seq: int | None = None, limit: int = 100) -> list[Row]:
        return self._page("files", "purpose = 'upload'", [], before_seq, after_seq, limit)

    def _page(
        self, table: str, where: str, args: list[Any], before_seq: int | None, after_seq: int | None, limit: int
    ) -> list[Row]:
        clauses = [where]
        if before_seq is not None:
            clauses.append("seq < ?")
            args = [*args, before_seq]
        if after_seq is not None:
            clauses.append("seq > ?")
            args = [*args, after_seq]
        order = "ASC" if after_seq is not None else "DESC"
        rows = self.conn.execute(
            f"SELECT * FROM {table} WHERE {' AND '.join(clauses)} ORDER BY seq {order} LIMIT ?", [*args, limit]
        ).fetchall()
        decoded = [self._decode(table, r) for r in rows]
        if order == "ASC":
            decoded.reverse()
        return decoded  # type: ignore[return-value]
