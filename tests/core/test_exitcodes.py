"""The one place exit codes are decided: errors by type, click's usage errors as 1."""
from __future__ import annotations

import click
import pytest

from jobrunner import errors as e
from jobrunner.exitcodes import TABLE, ExitCode, for_error


@pytest.mark.parametrize("err, code", [
    (e.ManifestError([]), 1),
    (e.UsageError("x"), 1),
    (e.AuthError("x"), 1),
    (e.StalePlanError("x"), 3),
    (e.StateLockedError("x"), 4),
    (click.UsageError("x"), 1),
    (click.BadParameter("x"), 1),
    (click.NoSuchOption("--x"), 1),
    (click.exceptions.Abort(), 130),
])
def test_for_error(err: BaseException, code: int) -> None:
    assert for_error(err) == code


def test_the_table_names_every_code_once_and_never_2_for_usage() -> None:
    assert [c for c, _ in TABLE] == list(ExitCode)
    assert "usage" in dict(TABLE)[ExitCode.ERROR] and "usage" not in dict(TABLE)[ExitCode.CHANGES]
