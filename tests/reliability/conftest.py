"""Fixtures of the reliability suites: one real local platform per test module, fresh workspaces."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import LOOKUP_WINDOW, Platform, serve_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with serve_platform(tmp_path_factory.mktemp("platform"), workers=2, min_cancel_after=1.0) as p:
        yield p


@pytest.fixture
def workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root conftest's workspace, with the short lookup window of harness.clean_env."""
    monkeypatch.setenv("JOBRUNNER_LOOKUP_WINDOW", LOOKUP_WINDOW)
    return workspace
