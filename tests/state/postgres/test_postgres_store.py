"""The PostgreSQL state backend against a real server started by the test session."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from jobrunner.errors import ConfigError, StateError, StateLockedError
from jobrunner.exitcodes import ExitCode, for_error
from jobrunner.state.identity import WorkspaceMismatchError
from jobrunner.state.model import AddressState, Attempt, Intent
from jobrunner.state.postgres import PostgresStore, ci_run_id, redact_url, split_state_url


def address(name: str, status: str = "succeeded", **extra) -> AddressState:
    return AddressState(
        address=f"Training/{name}",
        kind="Training",
        job_kind="training",
        provider="local",
        file="specs/train.yaml",
        fingerprint="f" * 64,
        remote_id=f"r-{name}",
        status=status,
        attempts=1,
        outputs={"version": "me/poems:abc"},
        history=[Attempt(remote_id=f"r-{name}", fingerprint="f" * 64, attempt=1,
                         created_at="2026-01-01T00:00:00Z", status=status)],
        **extra,
    )


def rows(url: str, workspace: str = "default") -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {
            a: (data, updated)
            for a, data, updated in conn.execute(
                "SELECT address, data, updated_at FROM jobrunner_state_addresses WHERE workspace = %s",
                (workspace,),
            )
        }


def test_empty_state_has_one_lineage_for_every_reader(pg_url):
    first = PostgresStore(pg_url).load()
    second = PostgresStore(pg_url).load()
    assert first.serial == 0 and first.addresses == {}
    assert first.lineage and first.lineage == second.lineage


def test_round_trip_keeps_every_field_and_bumps_serial(pg_url):
    store = PostgresStore(pg_url)
    doc = store.load()
    a = address("poems", status="running",
                intent=Intent(fingerprint="e" * 64, attempt=2, created_at="2026-01-02T00:00:00Z",
                              request_digest="d" * 64))
    doc.addresses[a.address] = a
    store.save(doc)
    assert doc.serial == 1
    loaded = PostgresStore(pg_url).load()
    assert loaded.serial == 1
    assert loaded.lineage == doc.lineage
    assert loaded.addresses == {a.address: a}
    store.save(loaded)
    assert PostgresStore(pg_url).load().serial == 2


def test_save_writes_only_changed_rows_and_deletes_removed_ones(pg_url):
    store = PostgresStore(pg_url)
    doc = store.load()
    for name in ("a", "b", "c"):
        doc.addresses[f"Training/{name}"] = address(name)
    store.save(doc)
    before = rows(pg_url)
    doc.addresses["Training/b"].status = "failed"
    del doc.addresses["Training/c"]
    store.save(doc)
    after = rows(pg_url)
    assert sorted(after) == ["Training/a", "Training/b"]
    assert after["Training/a"][1] == before["Training/a"][1]  # untouched row: same write time
    assert after["Training/b"][1] > before["Training/b"][1]
    assert after["Training/b"][0]["status"] == "failed"


def test_save_naming_changed_addresses_writes_their_rows_without_comparing_the_others(pg_url, monkeypatch):
    store = PostgresStore(pg_url)
    doc = store.load()
    for name in ("a", "b", "c", "d"):
        doc.addresses[f"Training/{name}"] = address(name)
    store.save(doc)
    before = rows(pg_url)
    compared = []

    def counting_eq(self: AddressState, other: object) -> bool:
        compared.append(self.address)
        return False

    monkeypatch.setattr(AddressState, "__eq__", counting_eq)
    doc.addresses["Training/b"].status = "failed"
    del doc.addresses["Training/c"]
    store.save(doc, {"Training/b", "Training/c"})
    assert compared == []  # no address was compared with what is stored
    after = rows(pg_url)
    assert sorted(after) == ["Training/a", "Training/b", "Training/d"]
    assert after["Training/a"][1] == before["Training/a"][1] and after["Training/d"][1] == before["Training/d"][1]
    assert after["Training/b"][0]["status"] == "failed"
    monkeypatch.undo()
    assert PostgresStore(pg_url).load().addresses == doc.addresses and doc.serial == 2


def test_save_naming_addresses_after_another_writer_still_compares(pg_url):
    mine, theirs = PostgresStore(pg_url), PostgresStore(pg_url)
    doc = mine.load()
    doc.addresses["Training/a"] = address("a")
    mine.save(doc)
    other = theirs.load()
    other.addresses["Training/z"] = address("z")
    theirs.save(other)
    doc.addresses["Training/a"].status = "failed"
    mine.save(doc, {"Training/a"})  # the stored serial moved: the names alone are not trusted
    assert PostgresStore(pg_url).load().addresses == doc.addresses


def test_save_after_another_writer_compares_against_the_database(pg_url):
    mine, theirs = PostgresStore(pg_url), PostgresStore(pg_url)
    doc = mine.load()
    doc.addresses["Training/a"] = address("a")
    mine.save(doc)
    other = theirs.load()
    other.addresses["Training/z"] = address("z")
    theirs.save(other)  # serial 2, a row `mine` has never seen
    doc.addresses["Training/a"].status = "failed"
    mine.save(doc)
    assert doc.serial == 3
    assert PostgresStore(pg_url).load().addresses == doc.addresses


def test_workspaces_share_a_database_without_seeing_each_other(pg_url):
    nlp, vision = PostgresStore(pg_url + "?workspace=nlp"), PostgresStore(pg_url + "?workspace=vision")
    doc = nlp.load()
    doc.addresses["Training/a"] = address("a")
    nlp.save(doc)
    assert vision.load().addresses == {}
    assert vision.load().lineage != nlp.load().lineage
    with nlp.lock("apply"), vision.lock("apply"):  # different workspace: its own lock
        pass


def test_lock_names_the_holder_and_exits_4(pg_url, monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_ID", "777")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"), pytest.raises(StateLockedError) as info, other.lock("plan"):
        pass
    err = info.value
    assert for_error(err) == ExitCode.LOCKED
    assert socket.gethostname() in err.message
    assert f"pid {os.getpid()}" in err.message
    assert "`jobrunner apply`" in err.message
    assert "github:acme/models/actions/runs/777" in err.message
    assert "state unlock" in err.hint
    # released: the other store takes it now, and the holder row is gone after it
    with other.lock("plan"):
        assert other.holder().command == "plan"
    assert other.holder() is None


def test_killed_holder_frees_the_lock_with_its_session(pg_url, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from jobrunner.state.postgres import PostgresStore
        store = PostgresStore({pg_url!r})
        with store.lock("apply"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        store = PostgresStore(pg_url)
        with pytest.raises(StateLockedError, match=f"pid {proc.pid}"), store.lock("apply"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while True:  # the server notices the dropped connection almost at once on loopback
        try:
            with store.lock("apply"):
                holder = store.holder()
            break
        except StateLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert holder.pid == os.getpid()  # the dead run's holder row was replaced
    assert any(f"pid {proc.pid}" in w and "session has ended" in w for w in store.warnings)


def test_stale_holder_is_reported_and_plain_unlock_frees_it(pg_url):
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE jobrunner_state_lock SET heartbeat_at = now() - interval '10 minutes'")
        with pytest.raises(StateLockedError, match="looks stale"), other.lock("apply"):
            pass
        other.unlock(force=False)  # ends the hung holder's session
        with other.lock("apply"):
            assert other.holder().pid == os.getpid()
    # the first holder's release on a dead session is quiet


def _backend_pid(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
        ).fetchone()[0]


def test_unlock_returns_only_once_the_ended_session_has_let_go_of_the_lock(pg_url):
    """pg_terminate_backend only signals the session: it may hold the advisory lock a while longer.

    The hung holder's backend is stopped (SIGSTOP) so that it cannot exit at once, as on a loaded
    server, and resumed after a second. Before unlock waited, it returned at once having removed
    the holder row, and the next `lock` met "another session (holder not recorded yet)".
    """
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE jobrunner_state_lock SET heartbeat_at = now() - interval '10 minutes'")
        backend = _backend_pid(pg_url)
        try:
            os.kill(backend, signal.SIGSTOP)
        except PermissionError:
            pytest.skip("cannot signal the PostgreSQL backend as this user")
        resume = threading.Timer(1.0, os.kill, (backend, signal.SIGCONT))
        resume.start()
        try:
            started = time.monotonic()
            assert other.unlock(force=False).startswith("ended the stale lock of")
            assert time.monotonic() - started >= 0.9  # it waited for the session to go
            with other.lock("apply"):
                assert other.holder().pid == os.getpid()
        finally:
            resume.join()


def test_unlock_of_a_session_that_will_not_exit_keeps_the_holder_row_and_says_so(pg_url, monkeypatch):
    monkeypatch.setattr("jobrunner.state.postgres.UNLOCK_WAIT_SECONDS", 0.5)
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE jobrunner_state_lock SET heartbeat_at = now() - interval '10 minutes'")
        backend = _backend_pid(pg_url)
        try:
            os.kill(backend, signal.SIGSTOP)
        except PermissionError:
            pytest.skip("cannot signal the PostgreSQL backend as this user")
        try:
            with pytest.raises(StateError, match="has not exited") as info:
                other.unlock(force=False)
            assert "state unlock" in info.value.hint
            assert other.holder() is not None  # the error that follows still names who holds it
        finally:
            os.kill(backend, signal.SIGCONT)


def test_unlock_refuses_a_live_lock_unless_forced(pg_url):
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"):
        with pytest.raises(StateLockedError, match="still alive") as info:
            other.unlock(force=False)
        assert "--force" in info.value.hint
        done = other.unlock(force=True)
        assert done.startswith("broke the state lock held by") and "`jobrunner apply`" in done
        assert other.holder() is None
        with other.lock("plan"):
            pass


def test_unlock_removes_a_leftover_holder_row(pg_url):
    store = PostgresStore(pg_url)
    store.load()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobrunner_state_lock VALUES ('default', 'x', 'ci-box', 42, 'ci', 'github:1', "
            "'apply', now() - interval '2 hours', now() - interval '2 hours', 99999)"
        )
    assert store.holder().host == "ci-box"
    done = store.unlock(force=False)
    assert "removed the state lock record" in done and "ci@ci-box" in done
    assert store.holder() is None
    assert store.unlock(force=False) == "the state is not locked"


def test_unreachable_server_is_a_state_error_without_the_password():
    store = PostgresStore("postgresql://ci:s3cret-pw@127.0.0.1:1/jobrunner", connect_timeout=2)
    with pytest.raises(StateError) as info:
        store.load()
    assert "s3cret-pw" not in info.value.message
    assert "ci:***@127.0.0.1:1" in info.value.message
    assert "JOBRUNNER_STATE_URL" in info.value.hint
    assert "s3cret-pw" not in store.describe()


def test_newer_format_version_is_refused(pg_url):
    store = PostgresStore(pg_url)
    store.load()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE jobrunner_state SET format_version = 99")
    with pytest.raises(StateError, match="format version 99"):
        PostgresStore(pg_url).load()


def test_url_parsing_and_redaction():
    assert split_state_url("postgresql://u@h/db?workspace=nlp&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require", "nlp")
    assert split_state_url("postgres://u@h/db") == ("postgres://u@h/db", "default")
    with pytest.raises(ConfigError):
        split_state_url("mysql://u@h/db")
    assert redact_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_ci_run_id_names_the_ci_system():
    assert ci_run_id({}) is None
    assert ci_run_id({"CI_PIPELINE_ID": "12"}) == "gitlab:12"
    assert ci_run_id({"GITHUB_RUN_ID": "5", "GITHUB_REPOSITORY": "o/r"}) == "github:o/r/actions/runs/5"


def test_open_store_picks_postgres_from_the_environment_or_the_config(pg_url, tmp_path, monkeypatch):
    from jobrunner.state.store import open_store
    from jobrunner.workspace import WorkspaceConfig

    monkeypatch.setenv("JOBRUNNER_STATE_URL", pg_url + "?workspace=ci")
    store = open_store(WorkspaceConfig(), tmp_path)
    assert isinstance(store, PostgresStore) and store.workspace == "ci"
    monkeypatch.delenv("JOBRUNNER_STATE_URL")
    store = open_store(WorkspaceConfig(state_backend="postgres", state_url=pg_url, workspace_id="acme"), tmp_path)
    assert isinstance(store, PostgresStore) and store.workspace == "default"
    assert store.load().serial == 0
    # Shared state with no workspace id named is refused, with the way out.
    unnamed = open_store(WorkspaceConfig(state_backend="postgres", state_url=pg_url), tmp_path)
    with pytest.raises(WorkspaceMismatchError, match="names no workspace id") as refused:
        unnamed.load()
    assert "jobrunner init" in (refused.value.hint or "")


def test_a_read_only_role_can_load_but_not_lock(pg_url):
    writer = PostgresStore(pg_url)
    doc = writer.load()
    doc.addresses["Training/a"] = address("a")
    writer.save(doc)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE reviewer LOGIN")
        conn.execute("GRANT SELECT ON jobrunner_state, jobrunner_state_addresses, jobrunner_state_lock TO reviewer")
    reader = PostgresStore(pg_url.replace("jobrunner@", "reviewer@"))
    assert reader.load().addresses == doc.addresses
    never_written = PostgresStore(pg_url.replace("jobrunner@", "reviewer@") + "?workspace=new").load()
    assert never_written.addresses == {} and never_written.serial == 0
    with pytest.raises(StateError, match="could not record the lock holder") as info, reader.lock("apply"):
        pass
    assert "INSERT" in info.value.hint
    with writer.lock("apply"):  # the failed attempt left nothing behind
        pass


def test_holder_times_are_the_servers_and_shown_in_utc(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} SET timezone = 'Asia/Kathmandu'")  # UTC+05:45
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    with holder.lock("apply"):
        row = other.holder()
        assert row.observed_at is not None and row.heartbeat_age() < 5  # server clock against server clock
        with psycopg.connect(pg_url) as conn:
            utc_start = conn.execute("SELECT to_char(started_at AT TIME ZONE 'UTC', "
                                     "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM jobrunner_state_lock").fetchone()[0]
        assert f"since {utc_start} (" in row.describe()


def test_a_holder_whose_lock_was_broken_refuses_to_write(pg_url):
    holder, other = PostgresStore(pg_url), PostgresStore(pg_url)
    doc = holder.load()
    doc.addresses["Training/a"] = address("a")
    with holder.lock("apply"):
        holder.save(doc)  # fine while held
        other.unlock(force=True)
        doc.addresses["Training/b"] = address("b")
        with pytest.raises(StateError, match="lost the state lock"):
            holder.save(doc)
    assert set(PostgresStore(pg_url).load().addresses) == {"Training/a"}
    with holder.lock("apply"):  # a new lock works again
        holder.save(doc)


def _session_setting(conn, name: str) -> str:
    return conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]


def test_sessions_commit_synchronously_on_a_server_that_does_not(pg_url):
    # The test server runs with synchronous_commit=off (pg_server.py): an acknowledged state write
    # could be lost by a server crash, and the next apply would create its jobs again.
    with psycopg.connect(pg_url) as conn:
        assert _session_setting(conn, "synchronous_commit") == "off"
    store = PostgresStore(pg_url)
    doc = store.load()
    assert _session_setting(store._conn, "synchronous_commit") == "on"
    with store.lock("apply"):
        assert _session_setting(store._lock_conn, "synchronous_commit") == "on"
        doc.addresses["Training/a"] = address("a")
        store.save(doc)
        assert _session_setting(store._conn, "synchronous_commit") == "on"
    store.close()


def test_a_stronger_synchronous_commit_is_kept(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} SET synchronous_commit = 'remote_apply'")
    store = PostgresStore(pg_url)
    store.load()
    assert _session_setting(store._conn, "synchronous_commit") == "remote_apply"
    store.close()
