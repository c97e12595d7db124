"""The README's first command on a fresh checkout: no jobrunner.yaml, the platform auto-starts.

Runs the real `jobrunner` entry point in a subprocess from a temp directory holding a copy of
specs/examples/, exactly as a new user would, then stops the platform it started.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.acceptance.conftest import REPO
from tests.helpers.cli import Result, run_process


def jobrunner(cwd: Path, *args: str) -> Result:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JOBRUNNER_LOCAL_TOKEN", "REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL")
    }
    env["PYTHONPATH"] = str(REPO)
    return run_process(list(args), cwd, env, timeout=180)


@pytest.mark.slow  # subprocesses and a platform autostart
def test_apply_examples_from_a_fresh_checkout_then_no_changes(tmp_path: Path):
    shutil.copytree(REPO / "specs" / "examples", tmp_path / "specs" / "examples")
    try:
        first = jobrunner(tmp_path, "apply", "--auto-approve", "specs/examples/")
        assert first.code == 0, first.output
        assert "Apply complete: 6 created" in first.stdout
        out = tmp_path / "specs/examples/out/poems-eval.jsonl"
        assert len([json.loads(x) for x in out.read_text().splitlines()]) == 4
        second = jobrunner(tmp_path, "apply", "--auto-approve", "specs/examples/")
        assert second.code == 0, second.output
        assert "No changes." in second.stdout
        # One workspace wherever you stand: from a sub-directory the root's state is found (no
        # jobrunner.yaml here, so through .jobrunner/state.json), nothing is planned anew, and no
        # second state appears.
        for sub in ("specs/examples", "specs/examples/data"):
            third = jobrunner(tmp_path / sub, "plan", "--detailed-exitcode", str(tmp_path / "specs/examples"))
            assert third.code == 0, third.output
            assert "No changes." in third.stdout
        third = jobrunner(tmp_path / "specs/examples", "plan", "--detailed-exitcode")
        assert third.code == 0, third.output
        assert sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob(".jobrunner")) == ["."]
    finally:
        from jobrunner.local.autostart import stop_platform

        stop_platform(tmp_path)
