"""Fixtures every suite shares."""
from __future__ import annotations

from typing import Iterator

import pytest


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
