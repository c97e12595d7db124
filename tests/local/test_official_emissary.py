"""The official `emissary-client-sdk` 0.4.4, unmodified, against a live local platform.

The SDK pins httpx<0.28 and pydantic<2.10, so it runs from its own cached virtual environment
(`sdk_venv`) in a subprocess: `emissary_sdk_driver.py` makes every call and checks what the SDK
returns. The SDK accepts a response only with the exact success code and a body that validates
against its models, so this is the wire-format compatibility test of the Emissary routes.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sdk_venv import VenvUnavailable, sdk_python

DRIVER = Path(__file__).with_name("emissary_sdk_driver.py")


@pytest.fixture(scope="module")
def emissary_python() -> Path:
    try:
        return sdk_python("emissary-client-sdk", "0.4.4", "emissary_client_sdk")
    except VenvUnavailable as exc:
        pytest.skip(f"cannot build an environment for emissary-client-sdk 0.4.4: {exc}")


@pytest.mark.slow
def test_official_emissary_sdk_full_flow(emissary_python: Path, live_platform: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMISSARY_")}
    run = subprocess.run(
        [str(emissary_python), str(DRIVER), live_platform.url, live_platform.token],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert run.stdout, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["ok"], (
        f"{report.get('error')}\n{report.get('traceback')}\nsteps done: {[s['step'] for s in report['steps']]}"
    )
    steps = {s["step"]: s["value"] for s in report["steps"]}
    assert steps["projects.list with a wrong key -> APIErrorUnauthorized"] == 401
    assert steps["base_models.list"] == ["jobrunner-ngram"]
    ckpts = steps["training_jobs.list_checkpoints"]
    assert [c["checkpoint"] for c in ckpts] == [1, 2, 3]
    assert all(float(c["aggregated_test_result"]["perplexity"]) > 1 for c in ckpts)
    assert steps["training_jobs.cancel"]["status"] == "Cancelled"
    # Canceled, not finished: it stopped short of 100%, and well before the 10 s it would still run
    # (a generous bound: the SDK's polls on a busy machine are slow, the cancel itself is not).
    assert steps["training_jobs.cancel"]["progress"] < 100
    assert steps["training_jobs.cancel"]["seconds_to_cancelled"] < 10.0
    assert steps["training_jobs.delete then get -> APIErrorNotFound"] == "object_not_found"
