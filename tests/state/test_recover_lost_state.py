"""`jobrunner state recover`: a state lost together with its backup, without duplicates.

End to end (real CLI, real local platform): a workspace with a training, a batch that references
its output and a batch with identical rows is applied; then `.jobrunner/state.json` and its
backup are deleted. Plans are refused (the marker outside the workspace remembers that it held
jobs); `state recover` finds every job on the provider, gives identical rows their jobs in
creation order, and the next plan has nothing to do: 0 duplicates, 0 lost. When identical rows
meet more jobs than rows, recovery reports them and records nothing until told how to decide.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import platform, workspace  # noqa: F401  (fixtures)
from tests.reliability.harness import (
    ECHO,
    NGRAM,
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    load_state,
    platform_now,
    run_cli,
)
from tests.reliability.workloads import POEM


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "markers"
    monkeypatch.setenv("JOBRUNNER_MARKER_DIR", str(where))
    return where


def _tag(root: Path) -> str:
    return root.parent.name[-12:].replace("_", "-").lower()


def _write(root: Path, tag: str, *, identical: int, trained: bool) -> None:
    docs = []
    if trained:
        docs += [
            (f"kind: Model\nmetadata: {{name: dest}}\nspec:\n  provider: local\n  owner: me\n  name: rec-{tag}\n"
            "  visibility: private\n  hardware: cpu\n"),
            (f"kind: Training\nmetadata: {{name: t}}\nspec:\n  provider: local\n  model: jobrunner/ngram\n"
            f"  version: {NGRAM}\n  destination: me/rec-{tag}\n  input:\n    train_data: \"{POEM} {tag}\"\n"
            "    order: 3\n"),
            ("kind: PredictionBatch\nmetadata: {name: gen}\nspec:\n  provider: local\n"
            "  version: ${Training.t.output.version}\n  inputs:\n    - {key: a, prompt: Tyger, seed: 1}\n"),
        ]
    rows = "".join(f"    - {{key: same{i}, text: \"{tag}\"}}\n" for i in range(identical))
    docs.append(f"kind: PredictionBatch\nmetadata: {{name: echo}}\nspec:\n  provider: local\n  version: {ECHO}\n"
                f"  inputs:\n{rows}    - {{key: other, text: \"{tag} other\"}}\n")
    (root / "jobs.yaml").write_text("".join("---\napiVersion: jobrunner/v1\n" + d for d in docs))


def _mine(live: Platform, since: str) -> list[dict]:
    """The platform's jobs created since `since` (this test's: the module's tests run one by one)."""
    return [j for kind in ("predictions", "trainings") for j in live.jobs(kind) if j["created_at"] >= since]


def _lose_state(root: Path) -> None:
    for name in ("state.json", "state.json.bak"):
        (root / ".jobrunner" / name).unlink(missing_ok=True)


def test_a_lost_state_is_refused_then_recovered_without_creating_anything(
        workspace: Path, platform: Platform, markers: Path,  # noqa: F811
) -> None:
    tag = _tag(workspace)
    since = platform_now(platform)
    _write(workspace, tag, identical=3, trained=True)
    apply_until_converged(workspace, clean_env(platform, JOBRUNNER_MARKER_DIR=str(markers)))
    before = load_state(workspace)["addresses"]
    jobs_before = sorted(j["id"] for j in _mine(platform, since))
    assert len(jobs_before) == 6, jobs_before  # training, gen[a], 3 identical rows, echo[other]
    _lose_state(workspace)

    refused = run_cli("plan")
    assert refused.code == 1, refused.output
    assert "are both missing" in refused.stderr and "`jobrunner state recover`" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (workspace / ".jobrunner" / "state.json").exists()

    dry = run_cli("state", "recover", "--dry-run")
    assert dry.code == 0, dry.output
    assert "nothing was recorded" in dry.stdout and not (workspace / ".jobrunner" / "state.json").exists()

    recovered = run_cli("state", "recover")
    assert recovered.code == 0, recovered.output
    assert recovered.stdout.count("given in creation order among identical rows") == 3, recovered.stdout
    assert "Recorded 6 job(s)" in recovered.stdout, recovered.stdout

    after = load_state(workspace)["addresses"]
    for address, st in before.items():
        if st["job_kind"] == "model":
            continue
        assert after[address]["remote_id"] == st["remote_id"] or address.startswith("PredictionBatch/echo[same")
        assert after[address]["status"] == "succeeded" and after[address]["fingerprint"] == st["fingerprint"]
    same = {after[f"PredictionBatch/echo[same{i}]"]["remote_id"] for i in range(3)}
    assert same == {before[f"PredictionBatch/echo[same{i}]"]["remote_id"] for i in range(3)}  # one each

    plan = run_cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output  # nothing to create: every job was found
    again = apply_until_converged(workspace, clean_env(platform, JOBRUNNER_MARKER_DIR=str(markers)))
    assert again[-1].code == 0
    assert sorted(j["id"] for j in _mine(platform, since)) == jobs_before  # 0 duplicates
    addresses = {a for a, st in before.items()}
    audit = audit_exactly_once(platform, workspace, since, addresses)
    assert not audit.problems, "\n".join(audit.problems)  # 0 lost, 0 shared ids, state agrees


def test_more_identical_jobs_than_rows_is_reported_and_recorded_only_when_told(
        workspace: Path, platform: Platform, markers: Path,  # noqa: F811
) -> None:
    tag = _tag(workspace)
    since = platform_now(platform)
    _write(workspace, tag, identical=2, trained=False)
    apply_until_converged(workspace, clean_env(platform, JOBRUNNER_MARKER_DIR=str(markers)))
    with platform.client() as c:  # a third job with the same input, made outside jobrunner
        extra = c.post("/v1/predictions", json={"version": ECHO, "input": {"text": tag}}).json()["id"]
    _lose_state(workspace)

    ambiguous = run_cli("state", "recover")
    assert ambiguous.code == 1, ambiguous.output
    assert "2 rows with one input, 3 matching jobs" in ambiguous.stdout and extra in ambiguous.stdout
    assert "nothing was recorded" in ambiguous.stderr and "--assign-in-order" in ambiguous.stderr
    assert not (workspace / ".jobrunner" / "state.json").exists()
    assert run_cli("plan").code == 1  # still refused: nothing decided, nothing to create from

    decided = run_cli("state", "recover", "--assign-in-order")
    assert decided.code == 0, decided.output
    state = load_state(workspace)["addresses"]
    ids = {state[f"PredictionBatch/echo[same{i}]"]["remote_id"] for i in range(2)}
    assert len(ids) == 2 and extra not in ids  # the earliest two: the ones apply made
    plan = run_cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output
    assert len(_mine(platform, since)) == 4  # 3 identical + other: nothing created


def test_without_a_marker_a_missing_state_is_a_new_workspace(tmp_path: Path, markers: Path) -> None:
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import AddressState

    path = tmp_path / "ws" / ".jobrunner" / "state.json"
    store = LocalFileStore(path)
    assert store.load().addresses == {}  # never saved: nothing to refuse
    doc = store.load()
    store.save(doc)
    path.unlink()
    (path.parent / "state.json.bak").unlink(missing_ok=True)
    assert LocalFileStore(path).load().addresses == {}  # saved, but never held a job
    doc.addresses["Training/t"] = AddressState(address="Training/t", kind="Training", job_kind="training",
                                               provider="local", file="jobs.yaml")
    store.save(doc)
    assert len(list(markers.glob("*.json"))) == 1
    path.unlink()
    (path.parent / "state.json.bak").unlink(missing_ok=True)
    from jobrunner.errors import StateError

    with pytest.raises(StateError, match="are both missing") as info:
        LocalFileStore(path).load()
    assert str(markers) in (info.value.hint or "")  # the way to start over on purpose
    for marker in markers.glob("*.json"):
        marker.unlink()
    assert LocalFileStore(path).load().addresses == {}
