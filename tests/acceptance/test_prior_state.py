"""A state file written before provider adapters still plans "No changes".

The state in tests/fixtures/prior_state/ was written by jobrunner before its canonical JSON, version
splitting and `{$file}` checks were each reduced to one definition (see make_state.py there). It
covers every place those feed an identity: Replicate-wire and Emissary trainings, a `{$file}` input
and dataset, `owner/name:id` versions, batch rows keyed by the digest of their canonical JSON (with
non-ASCII text), and a reference splicing a non-string output into a string. Any change in how a
fingerprint or a row key is computed shows here as a replace or a create.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prior_state"


@pytest.fixture
def prior_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("make_state.py", "state.json"))
    (root / ".jobrunner").mkdir()
    shutil.copyfile(FIXTURE / "state.json", root / ".jobrunner" / "state.json")
    monkeypatch.chdir(root)
    # Every job is terminal, so plan asks no provider; credentials only have to look present.
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_fixture_token_not_used")
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", "fixture-key-not-used")
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", "fixture-local-token")
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    return root


def test_a_state_written_before_adapters_plans_no_changes(prior_workspace: Path) -> None:
    result = run_cli("plan", "--detailed-exitcode", "manifests.yaml")
    assert result.code == 0, result.output
    assert "No changes" in result.output, result.output


def test_every_address_of_the_prior_state_is_still_desired(prior_workspace: Path) -> None:
    """Row keys (addresses) and fingerprints, compared one by one: a 'No changes' that hid a
    removed-and-recreated address would fail here."""
    import json

    from jobrunner.reconcile.planning import expand_desired, load_resources
    from jobrunner.state.local_file import LocalFileStore

    resources, _, _ = load_resources([prior_workspace / "manifests.yaml"], prior_workspace)
    doc = LocalFileStore(prior_workspace / ".jobrunner" / "state.json", workspace_id="prior-state-fixture").load()
    desired = {j.address: j.fingerprint for j in expand_desired(resources, prior_workspace, doc)}
    recorded = {a: st["fingerprint"] for a, st in json.loads((FIXTURE / "state.json").read_text())["addresses"].items()}
    assert desired == recorded
