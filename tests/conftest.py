"""Fixtures every suite shares.

- `workspace`: a fresh workspace (cwd) whose `jobrunner.yaml` points the `local` provider at the
  suite's live platform, with the platform's token set and every inherited credential, state URL,
  crash point and fault knob cleared. A suite provides the `platform` fixture (anything with `url`
  and `token`; tests/acceptance and tests/reliability serve one per module). Run the CLI in it with
  `tests.helpers.cli.run_cli`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import INHERITED_ENV, write_workspace


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Iterator[None]:
    """Each test starts with no secret values registered, as each CLI command does
    (`jobrunner.redact.SECRETS` is process-wide): a value one test's manifests call sensitive
    must not be hidden from the next test's output."""
    from jobrunner.redact import SECRETS

    SECRETS.clear()
    yield
    SECRETS.clear()


@pytest.fixture(autouse=True)
def _own_jobrunner_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto-started platforms live in the per-user `$JOBRUNNER_HOME` (data and the registry that
    `serve --status` lists): each test gets its own, so tests never share, list or stop one
    another's platforms, nor the developer's."""
    monkeypatch.setenv("JOBRUNNER_HOME", str(tmp_path_factory.mktemp("jobrunner-home")))


@pytest.fixture
def workspace(tmp_path: Path, platform: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_workspace(tmp_path / "ws", platform.url)
    monkeypatch.chdir(root)
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", platform.token)
    for var in INHERITED_ENV:
        monkeypatch.delenv(var, raising=False)
    return root
