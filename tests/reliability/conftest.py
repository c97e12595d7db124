"""Fixtures of the reliability suites: one real local platform per test module, fresh workspaces."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import LOOKUP_WINDOW, Platform, make_workspace, serve_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with serve_platform(tmp_path_factory.mktemp("platform"), workers=2, min_cancel_after=1.0) as p:
        yield p


@pytest.fixture
def workspace(tmp_path: Path, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_workspace(tmp_path / "ws", platform)
    monkeypatch.chdir(root)
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", platform.token)
    monkeypatch.setenv("JOBRUNNER_LOOKUP_WINDOW", LOOKUP_WINDOW)  # see harness.clean_env
    for var in ("REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL", "JOBRUNNER_TEST_CRASH_AT"):
        monkeypatch.delenv(var, raising=False)
    return root
