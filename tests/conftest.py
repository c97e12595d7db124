"""Fixtures every suite shares."""
from __future__ import annotations

from collections.abc import Iterator

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
