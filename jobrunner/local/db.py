"""The local platform's SQLite file: one connection, and a small codec each wire's store builds on.

One connection, owned by the server's event loop thread (every call is a short, indexed statement,
so it runs inline rather than in a thread). WAL journal with `synchronous=NORMAL`: a committed job
survives a crash of the server process, which is what clients that reconcile after a dropped
connection rely on.

Each wire keeps its own tables in this one file (one file to back up, one connection):
`replicate.store` (jobs, models, versions, files) and `emissary.store` (`emissary_*`). They create
them with `CREATE TABLE IF NOT EXISTS` through `Database.create_tables`, and read and write rows
through a `Table`, which decodes JSON columns so rows come back as plain dicts.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def dumps(value: Any) -> str:
    """The JSON text of a stored JSON column."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Database:
    """The platform's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")

    def create_tables(self, schema: str) -> None:
        """Run a wire's `CREATE TABLE IF NOT EXISTS ...` script (idempotent)."""
        self.conn.executescript(schema)

    def table(self, name: str, json_columns: Iterable[str] = ()) -> Table:
        return Table(self.conn, name, frozenset(json_columns))

    def close(self) -> None:
        self.conn.close()


class Table:
    """Rows of one table as dicts, with its JSON columns encoded on write and decoded on read."""

    def __init__(self, conn: sqlite3.Connection, name: str, json_columns: frozenset[str]) -> None:
        self.conn = conn
        self.name = name
        self.json_columns = json_columns

    def decode(self, row: sqlite3.Row | None) -> Row | None:
        if row is None:
            return None
        out = dict(row)
        for col in self.json_columns & out.keys():
            if out[col] is not None:
                out[col] = json.loads(out[col])
        return out

    def encode(self, values: Row) -> list[Any]:
        return [dumps(v) if k in self.json_columns and v is not None else v for k, v in values.items()]

    def insert(self, values: Row) -> None:
        cols = list(values)
        self.conn.execute(
            f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", self.encode(values)
        )

    def update(self, key: str, key_value: Any, values: Row) -> None:
        if not values:
            return
        self.conn.execute(
            f"UPDATE {self.name} SET {', '.join(c + ' = ?' for c in values)} WHERE {key} = ?",
            [*self.encode(values), key_value],
        )

    def one(self, sql: str, args: Iterable[Any] = ()) -> Row | None:
        return self.decode(self.conn.execute(sql, tuple(args)).fetchone())

    def all(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        return [self._decoded(r) for r in self.conn.execute(sql, tuple(args)).fetchall()]

    def _decoded(self, row: sqlite3.Row) -> Row:
        out = self.decode(row)
        assert out is not None  # fetchall never yields None
        return out
