"""`status` over a state whose every job is settled asks no provider and needs no HTTP client:
it prints what `--no-refresh` prints, and a bad refresh bound is the same error as ever."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, Attempt, StateDoc
from tests.helpers.cli import INHERITED_ENV, run_process
from tests.hostile_http import refused_url


def _env() -> dict[str, str]:
    drop = {*INHERITED_ENV, "JOBRUNNER_LOCAL_TOKEN", "JOBRUNNER_REFRESH_TIMEOUT"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _workspace(root: Path, statuses: list[str]) -> None:
    root.mkdir()
    # A provider nobody answers at: a refresh that asked it would fail.
    (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {refused_url()}\n", encoding="utf-8")
    doc = StateDoc(lineage="settled")
    for i, status in enumerate(statuses):
        address = f"PredictionBatch/b[item-{i}]"
        doc.addresses[address] = AddressState(
            address=address, kind="PredictionBatch", job_kind="prediction", provider="local", file="b.yaml",
            fingerprint=f"{i:064x}", remote_id=f"r{i}", status=status, attempts=1,
            history=[Attempt(f"r{i}", f"{i:064x}", 1, "2026-01-01T00:00:00.000000Z", status)])
    LocalFileStore(root / ".jobrunner" / "state.json").save(doc)


def test_a_settled_state_is_shown_without_a_refresh(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _workspace(root, ["succeeded", "failed", "canceled"])
    refreshed = run_process(["status"], root, _env())
    plain = run_process(["status", "--no-refresh"], root, _env())
    assert refreshed.code == plain.code == 0, refreshed.output
    assert refreshed.stdout == plain.stdout and "3 tracked: 1 succeeded, 1 failed, 1 canceled." in plain.stdout
    assert refreshed.stderr == ""


@pytest.mark.parametrize("statuses", [["succeeded"], ["running"]])
def test_a_bad_refresh_bound_is_an_error_whether_or_not_anything_runs(tmp_path: Path, statuses: list[str]) -> None:
    root = tmp_path / "ws"
    _workspace(root, statuses)
    result = run_process(["status", "--timeout", "bogus"], root, _env())
    assert result.code == 1 and "--timeout: invalid duration 'bogus'" in result.stderr, result.output
    assert "Traceback" not in result.output


def test_a_running_job_is_still_looked_up(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _workspace(root, ["succeeded", "running"])
    result = run_process(["status", "--timeout", "5s"], root, _env())
    # The provider is consulted: here it is refused for want of the platform's token.
    assert result.code == 1 and "providers.local.url is set" in result.stderr, result.output
