"""The pull-request workflow of docs/ci/github-actions.yml, command by command, for real.

A git repository holds the workspace; state lives in a real PostgreSQL server (started by the test
session on a loopback port) through `JOBRUNNER_STATE_URL`, as on CI; jobs run on the real local
platform. On a branch: validate, then `plan --out plan.json --format markdown` (the sticky
comment). Meanwhile main moves on with an unrelated manifest. Then the branch is merged and the
reviewed `plan.json` is applied: it does what the comment showed and nothing else. A second plan
of the reviewed manifests shows no changes, and the old plan cannot be applied twice.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import REPO
from tests.helpers.cli import run_cli
from tests.state.postgres.pg_server import NoServerBinaries, PgServer, start_server

MARKER = "<!-- jobrunner-plan -->"
COMMENT_LIMIT = 60_000

UNRELATED = """\
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {name: smoke}
spec:
  provider: local
  version: 0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6
  inputs:
    - {key: hello, text: "hello"}
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    pytest.importorskip("psycopg", reason="psycopg is not installed (python -m pip install -e '.[test]')")
    try:
        server = start_server()
    except NoServerBinaries as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def _name_workspace(root: Path) -> None:
    """Shared state needs a committed workspace id (what `jobrunner init` writes)."""
    config = root / "jobrunner.yaml"
    config.write_text("workspace: {id: acme-models}\n" + config.read_text(encoding="utf-8"), encoding="utf-8")


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
                               "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
                               "HOME": str(root), "PATH": "/usr/bin:/bin:/usr/local/bin"})
    return proc.stdout


def test_plan_on_a_branch_comment_merge_apply_reviewed_plan_then_no_changes(workspace, pg, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    state_url = pg.create_database("ci_workflow") + "?workspace=models"
    monkeypatch.setenv("JOBRUNNER_STATE_URL", state_url)
    _name_workspace(workspace)

    git(workspace, "init", "-q", "-b", "main")
    (workspace / ".gitignore").write_text(".jobrunner/\nplan.json\nplan.md\nspecs/examples/out/\n")
    git(workspace, "add", ".")
    git(workspace, "commit", "-q", "-m", "workspace")

    # --- the pull request: a branch adds the example manifests ---------------------------------
    git(workspace, "switch", "-q", "-c", "add-poems")
    shutil.copytree(REPO / "specs" / "examples", workspace / "specs" / "examples")
    git(workspace, "add", ".")
    git(workspace, "commit", "-q", "-m", "Train and evaluate the poems model")

    validate = run_cli("validate", "specs/")
    assert validate.code == 0, validate.output

    plan = run_cli("plan", "specs/", "--out", "plan.json", "--format", "markdown", "--detailed-exitcode")
    assert plan.code == 2, plan.output  # changes present
    comment = plan.stdout
    assert comment.count(MARKER) == 1
    assert len(comment) < COMMENT_LIMIT
    for address in ("Model/poems", "Training/poems-ngram", "PredictionBatch/poems-eval[moon]"):
        assert address in comment
    assert "r8_" not in comment and pg.url not in comment  # no secrets in the comment
    saved = json.loads((workspace / "plan.json").read_text())
    assert saved["kind"] == "jobrunner-saved-plan"
    planned = {c["address"]: c["action"] for c in saved["changes"] if c["touches"]}
    assert planned["Training/poems-ngram"] == "create" and len(planned) == 6  # model, training, 4 items
    reviewed_plan = (workspace / "plan.json").read_bytes()

    # --- meanwhile main moves on: an unrelated manifest lands ----------------------------------
    git(workspace, "switch", "-q", "main")
    (workspace / "specs" / "smoke").mkdir(parents=True)
    (workspace / "specs" / "smoke" / "smoke.yaml").write_text(UNRELATED)
    git(workspace, "add", ".")
    git(workspace, "commit", "-q", "-m", "Smoke test batch")

    # --- merge, then the apply job: the reviewed plan.json, downloaded as an artifact ----------
    git(workspace, "merge", "-q", "--no-edit", "add-poems")
    (workspace / "plan.json").write_bytes(reviewed_plan)
    apply = run_cli("apply", "plan.json")
    assert apply.code == 0, apply.output
    assert "Apply complete" in apply.stdout
    assert "PredictionBatch/smoke[hello]" in apply.output  # named as held back ...
    from jobrunner.state.postgres import PostgresStore

    doc = PostgresStore(state_url).load()
    assert not any(a.startswith("PredictionBatch/smoke") for a in doc.addresses)  # ... and not run
    assert {a for a, s in doc.addresses.items() if s.status == "succeeded"} == set(planned)
    rows = (workspace / "specs/examples/out/poems-eval.jsonl").read_text().splitlines()
    assert len(rows) == 4

    # --- the next plan of the reviewed manifests shows no changes ------------------------------
    again = run_cli("plan", "specs/examples/", "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    # --- and the reviewed plan cannot be applied a second time ---------------------------------
    twice = run_cli("apply", "plan.json")
    assert twice.code == 3, twice.output
    assert "Training/poems-ngram: planned create, now noop" in twice.stderr


def test_apply_while_another_run_holds_the_lock_exits_4_naming_it(workspace, pg, monkeypatch):
    from jobrunner.state.postgres import PostgresStore

    state_url = pg.create_database("ci_locked")
    monkeypatch.setenv("JOBRUNNER_STATE_URL", state_url)
    _name_workspace(workspace)
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    shutil.copytree(REPO / "specs" / "examples", workspace / "specs" / "examples")
    plan = run_cli("plan", "specs/", "--out", "plan.json")
    assert plan.code == 0, plan.output

    other_run = PostgresStore(state_url)
    with other_run.lock("apply"):
        blocked = run_cli("apply", "plan.json")
        assert blocked.code == 4, blocked.output
        assert "locked by" in blocked.stderr and "github:acme/models/actions/runs/4242" in blocked.stderr
        assert "`jobrunner apply`" in blocked.stderr
        # plans never wait for the lock: reviewers keep getting plans while an apply runs
        assert run_cli("plan", "specs/", "--detailed-exitcode").code == 2
    assert PostgresStore(state_url).load().addresses == {}  # the blocked apply wrote nothing
