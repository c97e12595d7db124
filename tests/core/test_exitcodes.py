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


def test_ctrl_c_wrapped_by_a_dataclass_import_is_an_interrupt(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A second Ctrl-C landing while a module defining a dataclass is imported reaches the CLI as
    a RuntimeError caused by KeyboardInterrupt (Python wraps what __set_name__ raises): exit 130
    with "Interrupted.", as for any Ctrl-C; any other RuntimeError is not swallowed."""
    from jobrunner import cli as cli_module

    def interrupted(**_: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance 'lines'") from exc

    monkeypatch.setattr(cli_module.cli, "main", interrupted)
    with pytest.raises(SystemExit) as stop:
        cli_module._main(["apply"])
    assert stop.value.code == ExitCode.INTERRUPTED
    assert "Interrupted." in capsys.readouterr().err

    def broken(**_: object) -> None:
        raise RuntimeError("a real bug")

    monkeypatch.setattr(cli_module.cli, "main", broken)
    with pytest.raises(RuntimeError, match="a real bug"):
        cli_module._main(["apply"])
