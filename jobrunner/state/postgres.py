"""State in PostgreSQL, shared by every CI run and developer of a workspace.

CI machines are fresh on every run, so a team that plans on pull requests and applies on merge
needs its state somewhere shared. This backend keeps one row per address (so a save only writes
the addresses that changed, in one transaction) plus a row of document metadata (serial, lineage).

The lock is a PostgreSQL session-level advisory lock keyed on the workspace, held on a dedicated
connection for as long as the command runs, plus a holder row saying who holds it (host, pid,
user, CI run, command, start time) and a heartbeat. Because the advisory lock belongs to the
connection, a CI job that is cancelled or killed releases it as soon as the server notices the
connection is gone (TCP keepalives are turned on to make that quick); the holder row it leaves
behind is simply replaced by the next run. A holder whose connection is still open but whose
heartbeat stopped is reported as stale, and `jobrunner state unlock --force` ends its session.

Several workspaces can share one database: the URL's `workspace` query parameter (default
`default`) names the workspace, e.g. `postgresql://ci@db.internal/jobrunner?workspace=nlp`. The
namespace also records the `workspace.id` of the repository that writes it, and a repository with
another id is refused (jobrunner.state.identity), so two repositories left on the same namespace
by mistake never see each other's jobs as removed.

Every session asks for `synchronous_commit = on` (unless something at least as strong is already
in force): a server configured with it off would acknowledge state writes it can still lose.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jobrunner.errors import ConfigError, StateError, StateLockedError
from jobrunner.state.identity import UNCHECKED, WorkspaceMismatchError, _Unchecked, check_identity
from jobrunner.state.lock import current_user, human_age, pid_alive
from jobrunner.state.model import STATE_FORMAT_VERSION, AddressState, StateDoc
from jobrunner.timestamps import to_rfc3339

log = logging.getLogger("jobrunner.state")

# How often the lock holder touches its heartbeat, and after how long without one a lock held by
# a still-open connection is reported as stale (the process hangs, or its host vanished without
# the TCP connection being torn down yet).
HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 120.0
# pg_terminate_backend only signals the session; it lets go of the advisory lock when its backend
# exits, which on a loaded server takes a moment. `unlock` waits this long for that to happen.
UNLOCK_WAIT_SECONDS = 10.0

# `synchronous_commit` values that wait for the commit's WAL to reach this server's disk (and, when
# synchronous standbys are configured, theirs): anything weaker is raised to `on` for our sessions.
DURABLE_SYNCHRONOUS_COMMIT = frozenset({"on", "remote_apply"})

# First half of the two-int advisory lock key: a fixed namespace ("jobr") so jobrunner's locks
# never collide with another application's advisory locks in the same database.
LOCK_NAMESPACE = 0x6A6F6272
# pg_locks.objsubid is 2 for locks taken with the (int4, int4) form of pg_advisory_lock.
_TWO_KEY_OBJSUBID = 2

# CI systems' own run identifiers, most specific first; the first one set names the run.
_CI_RUN_VARS = (
    ("GITHUB_RUN_ID", "github"),
    ("CI_PIPELINE_ID", "gitlab"),
    ("BUILD_BUILDID", "azure"),
    ("CIRCLE_WORKFLOW_ID", "circleci"),
    ("BUILDKITE_BUILD_ID", "buildkite"),
    ("BUILD_TAG", "jenkins"),
)

_SCHEMA_SQL = (
    """
    CREATE TABLE IF NOT EXISTS jobrunner_state (
        workspace      text PRIMARY KEY,
        format_version integer NOT NULL,
        serial         bigint NOT NULL,
        lineage        text NOT NULL,
        updated_at     timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Added after the first release: a database made by an older jobrunner gets them here.
    "ALTER TABLE jobrunner_state ADD COLUMN IF NOT EXISTS workspace_id text",
    "ALTER TABLE jobrunner_state ADD COLUMN IF NOT EXISTS recovered_at text",
    """
    CREATE TABLE IF NOT EXISTS jobrunner_state_addresses (
        workspace  text NOT NULL REFERENCES jobrunner_state (workspace) ON DELETE CASCADE,
        address    text NOT NULL,
        data       jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workspace, address)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS jobrunner_state_lock (
        workspace    text PRIMARY KEY,
        lock_id      text NOT NULL,
        host         text NOT NULL,
        pid          integer NOT NULL,
        username     text NOT NULL,
        ci_run       text,
        command      text NOT NULL,
        started_at   timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        backend_pid  integer NOT NULL
    )
    """,
)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a workspace's lock, as recorded in the holder row."""

    lock_id: str
    host: str
    pid: int
    user: str
    ci_run: str | None
    command: str
    started_at: datetime
    heartbeat_at: datetime
    backend_pid: int
    # The server's clock when the row was read: ages are measured on the server's clock only, so a
    # CI runner whose clock is off never makes a live lock look stale.
    observed_at: datetime | None = None

    def _now(self, now: datetime | None) -> datetime:
        return now or self.observed_at or datetime.now(UTC)

    def describe(self, now: datetime | None = None) -> str:
        age = human_age((self._now(now) - self.started_at).total_seconds())
        ci = f", CI run {self.ci_run}" if self.ci_run else ""
        started = to_rfc3339(self.started_at, timespec="seconds")
        return (
            f"{self.user}@{self.host} (pid {self.pid}{ci}) running `jobrunner {self.command}` "
            f"since {started} ({age} ago)"
        )

    def heartbeat_age(self, now: datetime | None = None) -> float:
        return (self._now(now) - self.heartbeat_at).total_seconds()


def ci_run_id(environ: dict[str, str] | None = None) -> str | None:
    """The CI run this process belongs to (e.g. `github:1234567`), or None outside CI."""
    env = os.environ if environ is None else environ
    for var, system in _CI_RUN_VARS:
        value = env.get(var)
        if value:
            if system == "github" and env.get("GITHUB_REPOSITORY"):
                return f"github:{env['GITHUB_REPOSITORY']}/actions/runs/{value}"
            return f"{system}:{value}"
    return None


def split_state_url(url: str) -> tuple[str, str]:
    """Split jobrunner's `workspace` query parameter off a PostgreSQL URL.

    Returns (connection URL for libpq, workspace name). libpq rejects unknown URL parameters, so
    the workspace must not reach it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"state URL {redact_url(url)!r} is not a PostgreSQL URL",
            hint="use postgresql://USER@HOST:PORT/DATABASE (optionally ?workspace=NAME).",
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    workspace = "default"
    rest = []
    for key, value in query:
        if key == "workspace":
            workspace = value or "default"
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), workspace


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced, fit for messages and `describe()`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from free text (driver messages may echo parts of the URL)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return text


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # an install without the extra
        raise ConfigError(
            "the PostgreSQL state backend needs the psycopg driver, which is not installed",
            hint="install it with `python -m pip install 'jobrunner[postgres]'`.",
        ) from exc
    return psycopg


def _workspace_key(workspace: str) -> int:
    """Second half of the advisory lock key: a stable signed 32-bit hash of the workspace name."""
    return int.from_bytes(hashlib.sha256(workspace.encode()).digest()[:4], "big", signed=True)


class PostgresStore:
    """The `StateStore` backed by PostgreSQL (psycopg 3).

    Connections are opened lazily: building a store never touches the network, so commands that
    only read manifests pay nothing for it.
    """

    def __init__(self, url: str, *, workspace: str | None = None, connect_timeout: int = 10,
                 workspace_id: str | None | _Unchecked = UNCHECKED) -> None:
        self.url = url
        # The workspace config's id, checked against the one the state records on every load
        # (jobrunner.state.identity); UNCHECKED for a store built outside a workspace.
        self.workspace_id = workspace_id
        self._conninfo, url_workspace = split_state_url(url)
        self.workspace = workspace or url_workspace
        self._connect_timeout = connect_timeout
        self._psycopg = _import_psycopg()
        self._conn: Any = None
        self._lock_conn: Any = None
        self._lock_id: str | None = None
        self._heartbeat_stop: threading.Event | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._schema_ready = False
        self._has_meta_columns = True  # jobrunner_state has workspace_id and recovered_at
        # address -> a private copy of the AddressState as last loaded or saved, with the serial it
        # belongs to: a save compares the document against it (dataclass equality, cheap) and only
        # serializes and writes the rows that differ (one row per address, not the whole document).
        self._known: dict[str, AddressState] | None = None
        self._known_serial: int | None = None
        self.warnings: list[str] = []  # e.g. a lock left by a dead run was taken over; the CLI prints them

    # --- description -------------------------------------------------------------------------

    def describe(self) -> str:
        return f"PostgreSQL {redact_url(self.url)} (workspace {self.workspace!r})"

    def __repr__(self) -> str:
        return f"PostgresStore({self.describe()})"

    # --- connections -------------------------------------------------------------------------

    def _connect(self, *, for_lock: bool = False) -> Any:
        psycopg = self._psycopg
        kwargs: dict[str, Any] = {
            "connect_timeout": self._connect_timeout,
            "application_name": "jobrunner-lock" if for_lock else "jobrunner",
            "autocommit": True,
        }
        if for_lock:
            # Client-side keepalives, so a dead server is noticed; the server-side ones are set
            # below, so a killed CI job's session (and its advisory lock) goes away quickly.
            kwargs.update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        try:
            conn = psycopg.connect(self._conninfo, **kwargs)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the PostgreSQL state at {redact_url(self.url)}: "
                f"{_scrub(str(exc).strip(), self.url)}",
                hint="check JOBRUNNER_STATE_URL (or state_url in jobrunner.yaml) and that the "
                "server is reachable from here.",
            ) from None
        try:
            self._require_synchronous_commit(conn)
        except StateError:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        if for_lock:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SET tcp_keepalives_idle = 30")
                conn.execute("SET tcp_keepalives_interval = 10")
                conn.execute("SET tcp_keepalives_count = 3")
        return conn

    def _require_synchronous_commit(self, conn: Any) -> None:
        """Make every commit of this session durable before the server acknowledges it.

        A server (or role, or database) configured with `synchronous_commit = off` acknowledges a
        commit before its WAL is flushed; a server crash then loses state writes jobrunner already
        acted on (a recorded remote id vanishes, and the next apply creates the job again). A
        setting at least as strong (`on`, `remote_apply`) is kept as it is.
        """
        with self._errors("ask for synchronous commits"):
            current = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()[0]
            if current not in DURABLE_SYNCHRONOUS_COMMIT:
                conn.execute("SET synchronous_commit = on")

    def _db(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            self._schema_ready = False
        if not self._schema_ready:
            self._ensure_schema(self._conn)
            self._schema_ready = True
        return self._conn

    def _ensure_schema(self, conn: Any) -> None:
        # Look before creating: CREATE ... IF NOT EXISTS still needs CREATE on the schema, which a
        # read-only role (e.g. the one pull-request plans use) does not have.
        with self._errors("look for the state tables"):
            missing = conn.execute(
                "SELECT to_regclass('jobrunner_state') IS NULL OR to_regclass('jobrunner_state_addresses') IS NULL "
                "OR to_regclass('jobrunner_state_lock') IS NULL OR (SELECT count(*) FROM pg_attribute "
                "WHERE attrelid = to_regclass('jobrunner_state') AND attname IN ('workspace_id', 'recovered_at') "
                "AND NOT attisdropped) < 2"
            ).fetchone()[0]
        if not missing:
            self._has_meta_columns = True
            return
        try:
            with self._errors("create the state tables"), conn.transaction():
                # Concurrent first runs would race on CREATE TABLE IF NOT EXISTS; serialize them.
                conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_NAMESPACE,))
                for statement in _SCHEMA_SQL:
                    conn.execute(statement)
        except StateError:
            # A read-only role cannot add the newer columns to tables an older jobrunner made: it
            # reads without them (no workspace id recorded there yet, so nothing to check).
            if self._tables_exist(conn):
                self._has_meta_columns = False
                return
            raise
        self._has_meta_columns = True

    def _tables_exist(self, conn: Any) -> bool:
        with self._errors("look for the state tables"):
            return bool(conn.execute(
                "SELECT to_regclass('jobrunner_state') IS NOT NULL AND to_regclass('jobrunner_state_addresses') "
                "IS NOT NULL AND to_regclass('jobrunner_state_lock') IS NOT NULL"
            ).fetchone()[0])

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        psycopg = self._psycopg
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StateError(
                f"lost the PostgreSQL state at {redact_url(self.url)} while trying to {doing}: "
                f"{_scrub(str(exc).strip(), self.url)}",
                hint="check that the server is reachable and run the command again.",
            ) from None
        except psycopg.Error as exc:
            raise StateError(
                f"PostgreSQL state at {redact_url(self.url)}: could not {doing}: "
                f"{_scrub(str(exc).strip(), self.url)}",
                hint="the database user needs CREATE on the database (first run) and "
                "SELECT/INSERT/UPDATE/DELETE on the jobrunner_state* tables.",
            ) from None

    def close(self) -> None:
        """Close the connections (releasing the lock if this store still holds it)."""
        self._stop_heartbeat()
        for conn in (self._conn, self._lock_conn):
            if conn is not None and not conn.closed:
                with contextlib.suppress(Exception):
                    conn.close()
        self._conn = None
        self._lock_conn = None
        self._lock_id = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the document ------------------------------------------------------------------------

    def _meta_row(self, conn: Any, *, for_update: bool) -> tuple[int, int, str, str | None, str | None] | None:
        """(format_version, serial, lineage, workspace_id, recovered_at) of this namespace, or None."""
        extra = "workspace_id, recovered_at" if self._has_meta_columns else "NULL::text, NULL::text"
        sql = f"SELECT format_version, serial, lineage, {extra} FROM jobrunner_state WHERE workspace = %s"
        if for_update:
            sql += " FOR UPDATE"
        return conn.execute(sql, (self.workspace,)).fetchone()

    def load(self) -> StateDoc:
        conn = self._db()
        with self._errors("read state"), conn.transaction():
            meta = self._meta_row(conn, for_update=False)
            if meta is None:
                # Fix the lineage now, so every reader of a not-yet-written state sees the same.
                try:
                    with conn.transaction():  # a savepoint: a read-only role may not insert
                        conn.execute(
                            "INSERT INTO jobrunner_state (workspace, format_version, serial, lineage) "
                            "VALUES (%s, %s, 0, %s) ON CONFLICT (workspace) DO NOTHING",
                            (self.workspace, STATE_FORMAT_VERSION, str(uuid.uuid4())),
                        )
                except self._psycopg.errors.InsufficientPrivilege:
                    self._known, self._known_serial = {}, 0
                    self._require_identity()
                    return StateDoc(format_version=STATE_FORMAT_VERSION, serial=0, lineage="",
                                    workspace_id=self._checked_identity(None))
                meta = self._meta_row(conn, for_update=False)
            assert meta is not None
            format_version, serial, lineage, recorded_id, recovered_at = meta
            workspace_id = self._checked_identity(recorded_id)  # before reading any address
            self._require_identity()
            if format_version > STATE_FORMAT_VERSION:
                raise StateError(
                    f"state in {self.describe()} has format version {format_version}; this "
                    f"jobrunner reads up to {STATE_FORMAT_VERSION}",
                    hint="upgrade jobrunner (`python -m pip install -U jobrunner`).",
                )
            rows = conn.execute(
                "SELECT address, data FROM jobrunner_state_addresses WHERE workspace = %s ORDER BY address",
                (self.workspace,),
            ).fetchall()
        try:
            addresses = {address: AddressState.from_json(data) for address, data in rows}
            known = {address: AddressState.from_json(data) for address, data in rows}
        except (TypeError, KeyError, ValueError) as exc:
            raise StateError(
                f"state in {self.describe()} holds an address row jobrunner cannot read: {exc}",
                hint="inspect the jobrunner_state_addresses table; restore it from a backup if it was edited by hand.",
            ) from None
        self._known, self._known_serial = known, serial
        return StateDoc(format_version=format_version, serial=serial, lineage=lineage, addresses=addresses,
                        workspace_id=workspace_id, recovered_at=recovered_at)

    def _require_identity(self) -> None:
        """Shared state needs a workspace id: without one, two repositories on the same URL and
        namespace would each read the other's jobs as removed, and an apply would cancel them."""
        if self.workspace_id is not None:  # an id, or UNCHECKED (library use without a config)
            return
        raise WorkspaceMismatchError(
            f"{self.describe()} is shared state, and this workspace's jobrunner.yaml names no workspace id; "
            "refusing to use it, so that another repository's jobs can never look removed here "
            "(nothing was read or changed)",
            hint="run `jobrunner init` in the workspace root (it writes `workspace: {id: ...}` to jobrunner.yaml), "
                 "or add `workspace: {id: <a name unique to this repository>}` yourself, and commit it "
                 "(docs/ci.md, \"One state per repository\")",
        )

    def _checked_identity(self, recorded: str | None) -> str | None:
        return check_identity(
            recorded, self.workspace_id, self.describe(),
            separate_hint="add `?workspace=NAME` with a name of its own to the state URL (JOBRUNNER_STATE_URL "
            "or state.url in jobrunner.yaml), or use another database",
        )

    def save(self, doc: StateDoc, changed: Collection[str] | None = None) -> None:
        """Write `doc` in one transaction: changed rows only, serial bumped (also on `doc`).

        `changed` names the addresses changed since the last save (apply's saves): only their
        rows are written or deleted, without looking at the others. Without it, or when another
        writer wrote since we last looked, every address is compared with what is stored."""
        conn = self._db()
        self._check_lock_held()
        lineage = doc.lineage or str(uuid.uuid4())
        jsonb = self._psycopg.types.json.Jsonb
        with self._errors("write state"), conn.transaction():
            current_serial = self._claim_meta_row(conn, doc, lineage)
            old = self._known if self._known is not None and self._known_serial == current_serial else None
            if old is not None and changed is not None:
                gone = sorted(a for a in changed if a not in doc.addresses and a in old)
                upsert = sorted(a for a in changed if a in doc.addresses)
            else:
                old = old if old is not None else self._stored_rows(conn)
                gone = sorted(set(old) - set(doc.addresses))
                upsert = sorted(a for a, st in doc.addresses.items() if old.get(a) != st)
            payload = {a: doc.addresses[a].to_json() for a in upsert}
            if gone:
                conn.execute(
                    "DELETE FROM jobrunner_state_addresses WHERE workspace = %s AND address = ANY(%s)",
                    (self.workspace, gone),
                )
            if upsert:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO jobrunner_state_addresses (workspace, address, data, updated_at) "
                        "VALUES (%s, %s, %s, now()) ON CONFLICT (workspace, address) "
                        "DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
                        [(self.workspace, a, jsonb(payload[a])) for a in upsert],
                    )
            serial = current_serial + 1
            if self._has_meta_columns:
                # As the document says: a recorded id is never dropped (the load checked it), and
                # recovered_at is cleared by the apply that finished the lookups.
                conn.execute(
                    "UPDATE jobrunner_state SET serial = %s, lineage = %s, format_version = %s, "
                    "workspace_id = COALESCE(%s, workspace_id), recovered_at = %s, updated_at = now() "
                    "WHERE workspace = %s",
                    (serial, lineage, doc.format_version, doc.workspace_id, doc.recovered_at, self.workspace),
                )
            else:
                conn.execute(
                    "UPDATE jobrunner_state SET serial = %s, lineage = %s, format_version = %s, "
                    "updated_at = now() WHERE workspace = %s",
                    (serial, lineage, doc.format_version, self.workspace),
                )
        doc.serial = serial
        doc.lineage = lineage
        # Updated in place: a save costs the rows it wrote, not a copy of every address.
        for a in gone:
            old.pop(a, None)
        old.update({a: AddressState.from_json(data) for a, data in payload.items()})  # private copies
        self._known, self._known_serial = old, serial

    def _claim_meta_row(self, conn: Any, doc: StateDoc, lineage: str) -> int:
        """The stored serial, the metadata row locked for this transaction (created if missing)."""
        meta = self._meta_row(conn, for_update=True)
        if meta is None:
            conn.execute(
                "INSERT INTO jobrunner_state (workspace, format_version, serial, lineage) "
                "VALUES (%s, %s, 0, %s)",
                (self.workspace, STATE_FORMAT_VERSION, lineage),
            )
            return 0
        recorded_id = meta[3]
        if recorded_id is not None and doc.workspace_id is not None and recorded_id != doc.workspace_id:
            # Another workspace claimed this namespace since we loaded it: never write over it.
            raise WorkspaceMismatchError(
                f"state in {self.describe()} was claimed by workspace {recorded_id!r} while this "
                f"command ran for workspace {doc.workspace_id!r}; state was not written",
                hint="two repositories share this state: give each its own `?workspace=NAME` in the state URL.",
            )
        return int(meta[1])

    def _stored_rows(self, conn: Any) -> dict[str, Any]:
        """Every stored address (someone else wrote since we last looked: compare against it)."""
        return {
            address: _parse_row(data)
            for address, data in conn.execute(
                "SELECT address, data FROM jobrunner_state_addresses WHERE workspace = %s",
                (self.workspace,),
            ).fetchall()
        }

    # --- the lock ----------------------------------------------------------------------------

    def holder(self) -> LockHolder | None:
        """The holder row, if any (it may be left over from a run whose session has ended)."""
        conn = self._db()
        with self._errors("read the lock holder"):
            row = conn.execute(
                "SELECT lock_id, host, pid, username, ci_run, command, started_at, heartbeat_at, "
                "backend_pid, now() FROM jobrunner_state_lock WHERE workspace = %s",
                (self.workspace,),
            ).fetchone()
        return LockHolder(*row) if row else None

    lock_holder = holder  # the name LocalFileStore uses

    def _lock_backend(self, conn: Any) -> int | None:
        """Backend pid of the session holding the workspace's advisory lock, or None."""
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = %s",
            (LOCK_NAMESPACE, _workspace_key(self.workspace) & 0xFFFFFFFF, _TWO_KEY_OBJSUBID),
        ).fetchone()
        return row[0] if row else None

    def lock_status(self) -> tuple[LockHolder | None, int | None, bool]:
        """(holder row, backend pid holding the advisory lock, stale?).

        Stale means: the advisory lock is held but its holder stopped heartbeating, or its
        recorded process on this very host is gone.
        """
        conn = self._db()
        holder = self.holder()
        with self._errors("read the lock"):
            backend = self._lock_backend(conn)
        if backend is None:
            return holder, None, False
        stale = False
        if holder is not None and holder.backend_pid == backend:
            stale = holder.heartbeat_age() > STALE_AFTER_SECONDS or (
                holder.host == socket.gethostname() and not pid_alive(holder.pid)
            )
        return holder, backend, stale

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        self._acquire(command)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, command: str) -> None:
        if self._lock_conn is not None:
            raise StateError("this process already holds the state lock")
        self._db()  # schema first
        conn = self._connect(for_lock=True)
        key = (LOCK_NAMESPACE, _workspace_key(self.workspace))
        got = False
        try:
            with self._errors("take the state lock"):
                got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]
            if not got:
                holder, _backend, stale = self.lock_status()
                raise _locked_error(self.describe(), holder, stale)
            previous = self.holder()
            if previous is not None:
                message = f"took over the state lock left by {previous.describe()}; its database session has ended"
                self.warnings.append(message)
                log.warning(message)  # shown on stderr like the local file store's warning
            lock_id = str(uuid.uuid4())
            with self._errors("record the lock holder"):
                # Whatever holder row is there belongs to a session that has ended (we hold the
                # advisory lock), e.g. a cancelled CI job: replace it.
                conn.execute(
                    "INSERT INTO jobrunner_state_lock (workspace, lock_id, host, pid, username, ci_run, "
                    "command, started_at, heartbeat_at, backend_pid) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), now(), pg_backend_pid()) "
                    "ON CONFLICT (workspace) DO UPDATE SET lock_id = EXCLUDED.lock_id, host = EXCLUDED.host, "
                    "pid = EXCLUDED.pid, username = EXCLUDED.username, ci_run = EXCLUDED.ci_run, "
                    "command = EXCLUDED.command, started_at = EXCLUDED.started_at, "
                    "heartbeat_at = EXCLUDED.heartbeat_at, backend_pid = EXCLUDED.backend_pid",
                    (self.workspace, lock_id, socket.gethostname(), os.getpid(), current_user(),
                     ci_run_id(), command),
                )
        except BaseException:
            if got:
                # Release it now: the server frees a closed session's locks only once its backend
                # has exited, and the next command must not find this failed attempt holding it.
                with contextlib.suppress(Exception):
                    conn.rollback()  # a failed INSERT aborts the transaction; the lock survives it
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._lock_conn, self._lock_id = conn, lock_id
        self._start_heartbeat()

    def _check_lock_held(self) -> None:
        """While this store holds the lock, refuse to write once it is lost.

        The lock dies with its session: a database restart, a dropped connection, or someone's
        `state unlock --force`. Writing on regardless could interleave with the next holder.
        """
        conn, lock_id = self._lock_conn, self._lock_id
        if conn is None:
            return
        try:
            cur = conn.execute(
                "UPDATE jobrunner_state_lock SET heartbeat_at = now() WHERE workspace = %s AND lock_id = %s",
                (self.workspace, lock_id),
            )
            held = cur.rowcount == 1
        except self._psycopg.Error:
            held = False
        if not held:
            raise StateError(
                f"lost the state lock on {self.describe()} (its database session ended: a dropped "
                "connection, a server restart, or `jobrunner state unlock --force`); state was not written",
                hint="jobs already created keep running and are found again by the next apply; run "
                "`jobrunner plan` again before applying.",
            )

    def _start_heartbeat(self) -> None:
        stop = threading.Event()
        conn, lock_id = self._lock_conn, self._lock_id

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    conn.execute(
                        "UPDATE jobrunner_state_lock SET heartbeat_at = now() "
                        "WHERE workspace = %s AND lock_id = %s",
                        (self.workspace, lock_id),
                    )
                except Exception:  # the connection is gone; the lock went with it
                    return

        thread = threading.Thread(target=beat, name="jobrunner-state-lock-heartbeat", daemon=True)
        thread.start()
        self._heartbeat_stop, self._heartbeat_thread = stop, thread

    def _stop_heartbeat(self) -> None:
        if self._heartbeat_stop is not None:
            self._heartbeat_stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=5)
        self._heartbeat_stop = self._heartbeat_thread = None

    def _release(self) -> None:
        self._stop_heartbeat()
        conn, lock_id = self._lock_conn, self._lock_id
        self._lock_conn = self._lock_id = None
        if conn is None:
            return
        try:
            conn.execute(
                "DELETE FROM jobrunner_state_lock WHERE workspace = %s AND lock_id = %s",
                (self.workspace, lock_id),
            )
            conn.execute(
                "SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, _workspace_key(self.workspace))
            )
        except Exception:
            pass  # the session is gone, and its advisory lock with it
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def unlock(self, force: bool) -> str:
        """Free the workspace's lock; returns a sentence saying what was done, for the CLI.

        Without `force` only a stale lock (see `lock_status`) or a leftover holder row is
        removed; with `force` the session holding the lock is terminated, whoever it is.
        """
        conn = self._db()
        holder, backend, stale = self.lock_status()
        who = holder.describe() if holder else "an unrecorded holder"
        if backend is None:
            done = f"removed the state lock record left by {who}" if holder else "the state is not locked"
        elif stale:
            done = f"ended the stale lock of {who}"
        else:
            done = f"broke the state lock held by {who}"
        if backend is not None:
            if not (force or stale):
                raise _locked_error(self.describe(), holder, stale=False, unlocking=True)
            with self._errors("end the session holding the lock"):
                ended = conn.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
            if not ended:
                raise StateError(
                    f"could not end the PostgreSQL session (pid {backend}) holding the state lock",
                    hint="the database user needs to be the lock holder's role, a superuser, or a "
                    "member of pg_signal_backend.",
                )
            # Only once the session is gone is the lock free: returning earlier (and removing
            # the holder row) let the next command meet a lock held by an unrecorded holder.
            self._wait_session_gone(conn, backend)
        with self._errors("remove the lock holder"):
            conn.execute("DELETE FROM jobrunner_state_lock WHERE workspace = %s", (self.workspace,))
        return done


    def _wait_session_gone(self, conn: Any, backend: int) -> None:
        """Wait (bounded) until the ended session `backend` no longer holds the workspace's lock."""
        deadline = time.monotonic() + UNLOCK_WAIT_SECONDS
        while True:
            with self._errors("read the lock"):
                if self._lock_backend(conn) != backend:
                    return
            if time.monotonic() >= deadline:
                raise StateError(
                    f"asked PostgreSQL to end the session (pid {backend}) holding the state lock on "
                    f"{self.describe()}, but it has not exited after {UNLOCK_WAIT_SECONDS:g} s",
                    hint="run `jobrunner state unlock` again in a moment; if it stays, the server's "
                    "administrator can look at that backend in pg_stat_activity.",
                )
            time.sleep(0.05)


def _parse_row(data: Any) -> AddressState | None:
    """An address row as an AddressState, or None when unreadable (then it is simply rewritten)."""
    try:
        return AddressState.from_json(data)
    except (TypeError, KeyError, ValueError):
        return None


def _locked_error(where: str, holder: LockHolder | None, stale: bool, unlocking: bool = False) -> StateLockedError:
    who = holder.describe() if holder else "another session (holder not recorded yet)"
    if stale and holder is not None:
        age = human_age(holder.heartbeat_age())
        return StateLockedError(
            f"state in {where} is locked by {who}; the lock looks stale (no heartbeat for {age})",
            hint="if that run is gone, free the lock with `jobrunner state unlock`.",
        )
    if unlocking:
        return StateLockedError(
            f"state in {where} is locked by {who}, which is still alive",
            hint="wait for it to finish; if you are sure it is stuck, `jobrunner state unlock --force` "
            "ends its database session and frees the lock.",
        )
    return StateLockedError(
        f"state in {where} is locked by {who}",
        hint="wait for that run to finish and try again; if it is stuck, see `jobrunner state unlock`.",
    )


def open_postgres_store(url: str, *, workspace_id: str | None | _Unchecked = UNCHECKED) -> PostgresStore:
    """The backend for a `postgresql://` state URL (used by `jobrunner.state.store.open_store`)."""
    return PostgresStore(url, workspace_id=workspace_id)
