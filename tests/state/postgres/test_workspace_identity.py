"""Two repositories on one PostgreSQL state never act on each other's jobs.

Each workspace names itself in `jobrunner.yaml` (`workspace: {id: ...}`); the state records the id
of the workspace that writes it and every command checks it. Here two real workspaces share one
real PostgreSQL database on the default namespace, with jobs on the real local platform: the
second one's commands are refused (exit 1, saying how to fix it) and the first one's running job
is never canceled; with a namespace of its own, the second one works beside the first.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest

from tests.acceptance.conftest import platform  # noqa: F401  (platform: a fixture)
from tests.helpers.cli import run_cli

# Two workspaces, a live platform and a PostgreSQL server: slow tier.
pytestmark = pytest.mark.slow

SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def make_workspace(root: Path, platform, name: str, workspace_id: str | None) -> Path:  # noqa: F811
    root.mkdir()
    ident = f"workspace: {{id: {workspace_id}}}\n" if workspace_id else ""
    (root / "jobrunner.yaml").write_text(f"{ident}providers:\n  local:\n    url: {platform.url}\n")
    (root / f"{name}.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: " + name + "}\nspec:\n"
        f"  provider: local\n  version: {SLEEP}\n  inputs:\n    - {{key: k, seconds: 30}}\n")
    return root


def remote(platform, rid: str, action: str = "") -> dict:  # noqa: F811
    headers = {"Authorization": f"Bearer {platform.token}"}
    if action:
        return httpx.post(f"{platform.url}/v1/predictions/{rid}/{action}", headers=headers, timeout=10).json()
    return httpx.get(f"{platform.url}/v1/predictions/{rid}", headers=headers, timeout=10).json()


def recorded_id(url: str, namespace: str = "default") -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT workspace_id FROM jobrunner_state WHERE workspace = %s", (namespace,)).fetchone()
    return row[0] if row else None


@pytest.fixture
def env(monkeypatch, platform, pg_url):  # noqa: F811
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", platform.token)
    monkeypatch.setenv("JOBRUNNER_STATE_URL", pg_url)
    for var in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return pg_url


def test_two_repositories_on_one_database_never_cancel_each_others_jobs(tmp_path, platform, env, monkeypatch):  # noqa: F811
    repo_a = make_workspace(tmp_path / "a", platform, "alpha", "repo-a-1111")
    monkeypatch.chdir(repo_a)
    first = run_cli("apply", "--auto-approve", "--no-wait", ".")
    assert first.code == 0, first.output
    assert recorded_id(env) == "repo-a-1111"
    from jobrunner.state.postgres import PostgresStore

    rid = PostgresStore(env).load().addresses["PredictionBatch/alpha[k]"].remote_id
    assert remote(platform, rid)["status"] in ("starting", "processing")

    try:
        # Repository B, same URL, same (default) namespace: every command is refused, nothing sent.
        repo_b = make_workspace(tmp_path / "b", platform, "beta", "repo-b-2222")
        monkeypatch.chdir(repo_b)
        for args in (("plan", "."), ("apply", "--auto-approve", "."), ("destroy", "--auto-approve"),
                     ("status",), ("state", "list")):
            refused = run_cli(*args)
            assert refused.code == 1, (args, refused.output)
            assert "belongs to workspace 'repo-a-1111'" in refused.stderr, refused.output
            assert "'repo-b-2222'" in refused.stderr and "?workspace=NAME" in refused.stderr
            assert "Traceback" not in refused.output
        # A clone without a workspace id is refused too, and told which id to set if it is repo A.
        (repo_b / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {platform.url}\n")
        no_id = run_cli("apply", "--auto-approve", ".")
        assert no_id.code == 1 and "names no workspace id" in no_id.stderr, no_id.output
        assert "workspace: {id: repo-a-1111}" in no_id.stderr
        assert remote(platform, rid)["status"] in ("starting", "processing")  # 0 cross-cancels

        # With a namespace of its own, repository B works beside A.
        (repo_b / "jobrunner.yaml").write_text(
            f"workspace: {{id: repo-b-2222}}\nproviders:\n  local:\n    url: {platform.url}\n")
        monkeypatch.setenv("JOBRUNNER_STATE_URL", env + "?workspace=beta")
        own = run_cli("apply", "--auto-approve", "--no-wait", ".")
        assert own.code == 0, own.output
        assert recorded_id(env, "beta") == "repo-b-2222"
        other = PostgresStore(env + "?workspace=beta").load().addresses["PredictionBatch/beta[k]"].remote_id

        # Repository A still plans no change and its job is still running.
        monkeypatch.setenv("JOBRUNNER_STATE_URL", env)
        monkeypatch.chdir(repo_a)
        again = run_cli("plan", ".", "--detailed-exitcode")
        assert again.code == 0 and "cancel" not in again.stdout, again.output
        assert remote(platform, rid)["status"] in ("starting", "processing")
        remote(platform, other, "cancel")
    finally:
        remote(platform, rid, "cancel")


def test_a_state_written_before_workspace_ids_is_claimed_by_the_first_workspace_that_names_one(
        tmp_path, platform, env, monkeypatch, caplog):  # noqa: F811
    repo = make_workspace(tmp_path / "a", platform, "alpha", None)
    monkeypatch.chdir(repo)
    # Shared state without a workspace id is refused outright: nothing read, nothing sent.
    refused = run_cli("apply", "--auto-approve", "--no-wait", ".")
    assert refused.code == 1 and "names no workspace id" in refused.stderr, refused.output
    assert "jobrunner init" in refused.stderr
    assert recorded_id(env) is None
    # A state an older jobrunner wrote (no ids then): apply once, then take the id away again.
    (repo / "jobrunner.yaml").write_text(
        f"workspace: {{id: repo-a-1111}}\nproviders:\n  local:\n    url: {platform.url}\n")
    legacy = run_cli("apply", "--auto-approve", "--no-wait", ".")
    assert legacy.code == 0, legacy.output
    with psycopg.connect(env, autocommit=True) as conn:
        conn.execute("UPDATE jobrunner_state SET workspace_id = NULL")
    assert recorded_id(env) is None
    from jobrunner.state.postgres import PostgresStore

    doc = PostgresStore(env).load()
    rids = [doc.addresses["PredictionBatch/alpha[k]"].remote_id]
    try:
        (repo / "jobrunner.yaml").write_text(
            f"workspace: {{id: repo-a-1111}}\nproviders:\n  local:\n    url: {platform.url}\n")
        manifest = repo / "alpha.yaml"
        manifest.write_text(manifest.read_text() + "    - {key: k2, seconds: 30}\n")
        again = run_cli("apply", "--auto-approve", "--no-wait", ".")
        assert again.code == 0, again.output
        assert "1 to add" in again.stdout or "create" in again.stdout, again.output
        rids.append(PostgresStore(env).load().addresses["PredictionBatch/alpha[k2]"].remote_id)
        assert recorded_id(env) == "repo-a-1111"  # claimed by its first write
        # From now on another id is refused.
        (repo / "jobrunner.yaml").write_text(
            f"workspace: {{id: someone-else}}\nproviders:\n  local:\n    url: {platform.url}\n")
        refused = run_cli("plan", ".")
        assert refused.code == 1 and "belongs to workspace 'repo-a-1111'" in refused.stderr, refused.output
    finally:
        for rid in rids:
            remote(platform, rid, "cancel")


_OLD_SCHEMA = (  # the tables as jobrunner made them before workspace ids
    "CREATE TABLE jobrunner_state (workspace text PRIMARY KEY, format_version integer NOT NULL, "
    "serial bigint NOT NULL, lineage text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE jobrunner_state_addresses (workspace text NOT NULL REFERENCES jobrunner_state (workspace) "
    "ON DELETE CASCADE, address text NOT NULL, data jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (workspace, address))",
    "CREATE TABLE jobrunner_state_lock (workspace text PRIMARY KEY, lock_id text NOT NULL, host text NOT NULL, "
    "pid integer NOT NULL, username text NOT NULL, ci_run text, command text NOT NULL, started_at timestamptz "
    "NOT NULL, heartbeat_at timestamptz NOT NULL, backend_pid integer NOT NULL)",
    "INSERT INTO jobrunner_state VALUES ('default', 1, 4, 'L')",
    "INSERT INTO jobrunner_state_addresses VALUES ('default', 'Training/a', "
    "'{\"address\": \"Training/a\", \"kind\": \"Training\", \"job_kind\": \"training\", \"provider\": \"local\", "
    "\"file\": \"a.yaml\", \"remote_id\": \"r1\"}')",
)


def test_a_database_made_by_an_older_jobrunner_gets_the_identity_columns(pg_url):
    from jobrunner.state.postgres import PostgresStore

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in _OLD_SCHEMA:
            conn.execute(statement)
        conn.execute("CREATE ROLE old_reader LOGIN")  # roles are per server: a name of its own
        conn.execute("GRANT SELECT ON jobrunner_state, jobrunner_state_addresses, jobrunner_state_lock TO old_reader")
    # A read-only role cannot add the columns: it still reads (there is no id recorded to check).
    reader = PostgresStore(pg_url.replace("jobrunner@", "old_reader@"), workspace_id="ml-1").load()
    assert reader.serial == 4 and set(reader.addresses) == {"Training/a"}
    store = PostgresStore(pg_url, workspace_id="ml-1")
    doc = store.load()
    assert doc.workspace_id == "ml-1" and doc.serial == 4
    with store.lock("apply"):
        store.save(doc)
    assert recorded_id(pg_url) == "ml-1"
    assert PostgresStore(pg_url.replace("jobrunner@", "old_reader@"), workspace_id="ml-1").load().serial == 5
    store.close()


def test_a_namespace_claimed_by_another_workspace_meanwhile_is_not_written(pg_url):
    from jobrunner.state.identity import WorkspaceMismatchError
    from jobrunner.state.postgres import PostgresStore

    late, early = PostgresStore(pg_url, workspace_id="late-1"), PostgresStore(pg_url, workspace_id="early-2")
    late_doc = late.load()  # unclaimed when loaded
    early_doc = early.load()
    with early.lock("apply"):
        early.save(early_doc)
    with late.lock("apply"), pytest.raises(WorkspaceMismatchError, match="claimed by workspace 'early-2'"):
        late.save(late_doc)
    assert recorded_id(pg_url) == "early-2"
    late.close()
    early.close()
