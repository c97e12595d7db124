"""End-to-end fixtures: a real local platform on an ephemeral loopback port, a temp workspace, the real CLI.

The platform is the embedded one (`jobrunner.local.app.create_app`) served by uvicorn in a
background thread (tests/platform_fixture.py), shared by the tests of a module; each test gets a fresh workspace whose
`jobrunner.yaml` points the `local` provider at it. The CLI runs in-process through
`jobrunner.cli.main` (the same entry point as the `jobrunner` script), with stdout, stderr and the
exit code captured.
"""
from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.platform_fixture import LivePlatform as Platform
from tests.platform_fixture import serve_platform

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    token = "r8_test_" + secrets.token_hex(8)
    with serve_platform(tmp_path_factory.mktemp("platform"), token, workers=2, min_cancel_after=1.0) as live:
        yield live


@pytest.fixture
def workspace(tmp_path: Path, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {platform.url}\n", encoding="utf-8")
    monkeypatch.chdir(root)
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", platform.token)
    for var in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    return root


def copy_examples(root: Path) -> Path:
    dest = root / "specs" / "examples"
    shutil.copytree(REPO / "specs" / "examples", dest)
    return dest


def run_cli(*args: str, input: str | None = None) -> Result:
    """`jobrunner ARGS` in-process, exactly as the console script runs it."""
    from jobrunner.cli import main

    runner = CliRunner()
    code = 0
    with runner.isolation(input=input) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Result(code, stdout, stderr)
