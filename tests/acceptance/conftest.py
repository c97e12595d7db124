"""End-to-end fixtures: a real local platform on an ephemeral loopback port, a temp workspace, the real CLI.

The platform is the embedded one (`jobrunner.local.app.create_app`) served by uvicorn in a
background thread (tests/platform_fixture.py), shared by the tests of a module; each test gets a fresh workspace whose
`jobrunner.yaml` points the `local` provider at it (the root conftest's `workspace` fixture). The CLI runs
in-process through `jobrunner.cli.main` (the same entry point as the `jobrunner` script), with stdout,
stderr and the exit code captured (`run_cli`, from tests/helpers/cli.py).
"""
from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# The CLI helpers live in tests/helpers/cli.py; re-exported for tests that still import them from here.
from tests.helpers.cli import Result as Result
from tests.helpers.cli import run_cli as run_cli
from tests.platform_fixture import LivePlatform as Platform
from tests.platform_fixture import serve_platform

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    token = "r8_test_" + secrets.token_hex(8)
    with serve_platform(tmp_path_factory.mktemp("platform"), token, workers=2, min_cancel_after=1.0) as live:
        yield live


def copy_examples(root: Path) -> Path:
    dest = root / "specs" / "examples"
    shutil.copytree(REPO / "specs" / "examples", dest)
    return dest
