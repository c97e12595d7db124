"""Crash suite: `kill -9` apply at chosen points, re-run, and prove exactly-once every time.

Each case runs `jobrunner apply` as a separate process with `JOBRUNNER_TEST_CRASH_AT=<point>[:<n>]`
(see `jobrunner.crashpoints`), which SIGKILLs it the n-th time it reaches that point. After each
kill the state file must still parse (never torn); then apply is re-run until it exits 0 and the
platform's own listing is audited against state: one remote job per address and attempt, nothing
lost, nothing created twice. The first re-run must also take over the dead process's lock with a
warning (a `kill -9` never leaves the workspace stuck).
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from jobrunner.crashpoints import POINTS
from jobrunner.errors import StateError
from jobrunner.state.local_file import read_state_json
from tests.helpers.cli import start_process
from tests.reliability.harness import (
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    platform_now,
    run_cli,
    run_process,
)
from tests.reliability.workloads import write_workload

# Every case runs apply as a subprocess and kills it: the fast tier (`-m "not slow"`) leaves them out.
pytestmark = pytest.mark.slow

# (case id, crash points hit one after another by successive runs, extra environment)
# Apply appends its saves to the state journal and compacts it into a new snapshot when it outgrows
# the snapshot and at the end of the run; COMPACT makes the small workload compact every few saves,
# so the snapshot-write points are reached in the middle of the batch.
COMPACT = {"JOBRUNNER_TEST_COMPACT_BYTES": "0"}
CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("locked", ["apply.locked"], {}),
    ("after-intent-before-create", ["create.intent_saved"], {}),
    ("after-intent-mid-batch", ["create.intent_saved:5"], {}),
    ("after-create-before-state-write", ["create.sent"], {}),
    ("after-create-mid-batch", ["create.sent:6"], {}),
    ("after-id-saved-before-wait", ["create.recorded:3"], {}),
    ("during-wait-status-change", ["wait.status_changed:2"], {}),
    ("job-done-not-saved", ["wait.terminal:2"], {}),
    ("before-output-files", ["outputs.before_write"], {}),
    ("state-write-after-backup", ["state.backup_kept:3"], COMPACT),
    ("state-write-torn-temp-file", ["state.tmp_partial:3"], COMPACT),
    ("state-write-before-rename", ["state.tmp_written:2"], COMPACT),
    ("state-write-after-rename", ["state.renamed:2"], COMPACT),
    ("compaction-before-journal-removed", ["state.compacted:2"], COMPACT),
    ("end-of-run-compaction-before-rename", ["state.tmp_written"], {}),
    ("journal-torn-last-record", ["journal.partial:4"], {}),
    ("journal-record-fsynced-not-acknowledged", ["journal.appended:6"], {}),
    ("twice: torn record, then torn again", ["journal.partial:3", "journal.partial:2"], {}),
    ("twice: create sent, then lookup found", ["create.sent:2", "create.lookup_found"], {}),
    ("twice: after create, then during wait", ["create.sent:4", "wait.status_changed"], {}),
]


def _state_parses(root: Path) -> None:
    path = root / ".jobrunner" / "state.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))  # a torn file would fail here
        assert "addresses" in data and isinstance(data["serial"], int)
        read_state_json(path)  # and its journal replays (a torn last record is dropped, not an error)


@pytest.mark.parametrize(("points", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kill_9_then_rerun_is_exactly_once(points: list[str], extra: dict[str, str], workspace: Path,
                                           platform: Platform) -> None:
    for point in points:
        assert point.split(":")[0] in POINTS
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    expected = write_workload(workspace, tag, predictions=8, trainings=1, slow=1, output_file=True)
    since = platform_now(platform)
    for point in points:
        r = run_process(["apply", "--auto-approve", "jobs.yaml"], workspace,
                        clean_env(platform, JOBRUNNER_TEST_CRASH_AT=point, **extra))
        assert r.code == -signal.SIGKILL, f"{point} was never reached:\n{r.output}"
        _state_parses(workspace)
    results = apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    assert "took over a stale state lock" in results[0].output, results[0].output
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 10  # 8 echo + 1 sleep + 1 training, each created exactly once
    assert (workspace / "out" / "echo.jsonl").read_text().count("\n") == 8
    r = run_cli("plan", "--detailed-exitcode", "jobs.yaml")
    assert r.code == 0, r.output


def test_truncated_state_gives_the_way_back_and_the_backup_converges(workspace: Path, platform: Platform) -> None:
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    expected = write_workload(workspace, tag, predictions=6, trainings=0)
    since = platform_now(platform)
    r = run_process(["apply", "--auto-approve", "jobs.yaml"], workspace,
                    clean_env(platform, JOBRUNNER_TEST_CRASH_AT="create.recorded:4"))
    assert r.code == -signal.SIGKILL
    state = workspace / ".jobrunner" / "state.json"
    backup = workspace / ".jobrunner" / "state.json.bak"
    assert backup.exists()
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a truncated file (disk full, bad copy)

    for command in (["plan", "jobs.yaml"], ["apply", "--auto-approve", "jobs.yaml"], ["status"]):
        r = run_cli(*command)
        assert r.code == 1, r.output
        assert "Traceback" not in r.output
        assert "corrupt or truncated" in r.output and "`jobrunner state restore-backup`" in r.output, r.output
    # The documented way back: restore the last good copy (marked recovered); the next apply
    # looks up on the provider what it lacks instead of creating it again.
    restored = run_cli("state", "restore-backup")
    assert restored.code == 0, restored.output
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 6


def test_an_identical_job_from_elsewhere_is_not_adopted_in_place_of_ours(workspace: Path, platform: Platform) -> None:
    """Crash after the create: the re-run must adopt *our* job, not an identical one another
    workspace created seconds before (inside the clock-skew window of the lookup)."""
    from tests.reliability.harness import ECHO

    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    expected = write_workload(workspace, tag, predictions=1, trainings=0)
    with platform.client() as c:  # someone else's run of the very same input
        foreign = c.post("/v1/predictions", json={"version": ECHO, "input": {"text": tag, "n": 0}}).json()["id"]
    since = platform_now(platform)
    r = run_process(["apply", "--auto-approve", "jobs.yaml"], workspace,
                    clean_env(platform, JOBRUNNER_TEST_CRASH_AT="create.sent"))
    assert r.code == -signal.SIGKILL
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 1
    state = json.loads((workspace / ".jobrunner" / "state.json").read_text())
    assert state["addresses"]["PredictionBatch/echo[p0]"]["remote_id"] != foreign


def _emissary_setup(platform: Platform, tag: str, count: int = 3) -> tuple[str, list[str]]:
    em = {"X-API-Key": platform.token, "Authorization": ""}
    with platform.client() as c:
        project = c.post("/v1/projects", json={"name": f"crash-{tag}"}, headers=em).json()["id"]
        datasets = []
        for i in range(count):
            rows = "".join(json.dumps({"text": f"dataset {i} line {n} of {tag}"}) + "\n" for n in range(20))
            r = c.post(f"/v1/projects/{project}/datasets", data={"name": f"d{i}"}, headers=em,
                       files={"file": (f"d{i}.jsonl", rows.encode())})
            r.raise_for_status()
            datasets.append(r.json()["id"])
    return project, datasets


@pytest.mark.parametrize("point", ["create.intent_saved:3", "create.sent:2", "create.sent:3"])
def test_emissary_trainings_that_differ_only_by_dataset_are_never_swapped(point: str, workspace: Path,
                                                                         platform: Platform) -> None:
    """Emissary's list gives job summaries (no datasets, no parameters): after a crash, the lookup
    must still tell apart trainings of one project and base model that differ only by dataset."""
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    project, datasets = _emissary_setup(platform, tag)
    (workspace / "jobs.yaml").write_text("".join(
        f"---\napiVersion: jobrunner/v1\nkind: Training\nmetadata: {{name: t{i}}}\nspec:\n  provider: emissary\n"
        f"  project_id: {project}\n  base_model: jobrunner-ngram\n  train_dataset_id: {d}\n"
        for i, d in enumerate(datasets)))
    env = clean_env(platform, EMISSARY_SERVER_URL=platform.url, EMISSARY_CLIENT_API_KEY=platform.token)
    r = run_process(["apply", "--auto-approve", "jobs.yaml"], workspace, {**env, "JOBRUNNER_TEST_CRASH_AT": point})
    assert r.code == -signal.SIGKILL, r.output
    apply_until_converged(workspace, env, "jobs.yaml")
    state = json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"]
    em = {"X-API-Key": platform.token, "Authorization": ""}
    with platform.client() as c:
        jobs = c.get(f"/v1/projects/{project}/training-jobs", headers=em).json()
        assert len(jobs) == 3, [j["id"] for j in jobs]  # one per training: none created twice
        for i, d in enumerate(datasets):
            st = state[f"Training/t{i}"]
            assert st["status"] == "succeeded" and st["intent"] is None
            detail = c.get(f"/v1/projects/{project}/training-jobs/{st['remote_id']}", headers=em).json()
            assert detail["train_dataset"]["id"] == d, f"Training/t{i} adopted a job trained on another dataset"


@pytest.mark.parametrize("signals", [[signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=["ctrl-c-twice", "sigterm"])
def test_ctrl_c_twice_or_sigterm_mid_batch_then_rerun_is_exactly_once(signals: list[int], workspace: Path,
                                                                      platform: Platform) -> None:
    """What a user (Ctrl-C, Ctrl-C) or a cancelled CI job (SIGTERM) does in the middle of a batch."""
    import time

    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    expected = write_workload(workspace, tag, predictions=30, trainings=1, slow=2)
    since = platform_now(platform)
    proc = start_process(["apply", "--auto-approve", "--parallelism", "2", "jobs.yaml"], workspace,
                         clean_env(platform), merge_stderr=True)
    state = workspace / ".jobrunner" / "state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until a few creates are recorded
        try:
            if sum(1 for a in read_state_json(state)["addresses"].values() if a.get("remote_id")) >= 3:
                break
        except (FileNotFoundError, ValueError, StateError):
            pass
        time.sleep(0.01)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=60)
    # 130 (or death by SIGINT, which a shell also shows as 130) for Ctrl-C; death by SIGTERM for SIGTERM
    assert proc.returncode in (130, -signal.SIGINT, -signal.SIGTERM), out
    assert "Traceback" not in out, out
    _state_parses(workspace)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 33


def test_kill_9_in_the_middle_of_a_replace_then_rerun(workspace: Path, platform: Platform) -> None:
    """Changed inputs replace jobs (the running ones are canceled first); a kill after the first
    cancel, then after a create, must still end with one new job per address and the old ones canceled."""
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    expected = write_workload(workspace, tag, predictions=4, trainings=0, slow=2, slow_seconds=30)
    since = platform_now(platform)
    r = run_process(["apply", "--auto-approve", "--no-wait", "jobs.yaml"], workspace, clean_env(platform))
    assert r.code == 0, r.output
    manifest = workspace / "jobs.yaml"
    manifest.write_text(
        manifest.read_text()
        .replace("log_lines: 3", "log_lines: 4")
        .replace("seconds: 30.", "seconds: 1.")
        .replace(f'"{tag}"', f'"{tag}-v2"')
    )
    for point in ("cancel.sent", "create.sent:3"):
        r = run_process(["apply", "--auto-approve", "jobs.yaml"], workspace,
                        clean_env(platform, JOBRUNNER_TEST_CRASH_AT=point))
        assert r.code == -signal.SIGKILL, f"{point} was never reached:\n{r.output}"
        _state_parses(workspace)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 12  # 6 originals, 6 replacements
    old = [j for j in platform.jobs("predictions") if j["created_at"] >= since
           and j["input"].get("log_lines") == 3]
    assert len(old) == 2 and all(j["status"] in ("canceled", "succeeded") for j in old), old


def test_kill_9_during_destroy_then_rerun(workspace: Path, platform: Platform) -> None:
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    write_workload(workspace, tag, predictions=2, trainings=0, slow=3, slow_seconds=30)
    since = platform_now(platform)
    r = run_process(["apply", "--auto-approve", "--no-wait", "jobs.yaml"], workspace, clean_env(platform))
    assert r.code == 0, r.output
    r = run_process(["destroy", "--auto-approve", "jobs.yaml"], workspace,
                    clean_env(platform, JOBRUNNER_TEST_CRASH_AT="cancel.sent:2"))
    assert r.code == -signal.SIGKILL, r.output
    _state_parses(workspace)
    r = run_process(["destroy", "--auto-approve", "jobs.yaml"], workspace, clean_env(platform))
    assert r.code == 0, r.output
    assert json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"] == {}
    jobs = [j for j in platform.jobs("predictions") if j["created_at"] >= since]
    assert len(jobs) == 5, "destroy never creates"
    slow = [j for j in jobs if "seconds" in j["input"]]
    assert slow and all(j["status"] in ("canceled", "succeeded") for j in slow), [j["status"] for j in slow]
    assert sum(j["status"] == "canceled" for j in slow) >= 2
