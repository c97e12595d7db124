"""The CLI's last boundary: whatever prints to stdout/stderr during a command is scrubbed of the
secret values the command knows, and the wrapped stream still behaves like the terminal."""
from __future__ import annotations

import io
import sys

import click
import pytest

from jobrunner.redact import REDACTED, SECRETS
from jobrunner.render.guard import ScrubbingStream, guarded_output


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_write_loses_known_values_and_the_stream_stays_a_terminal() -> None:
    SECRETS.add("sentinel-guard-value-1")
    inner = _Tty()
    stream = ScrubbingStream(inner)
    stream.write("error: the server said 'sentinel-guard-value-1' is wrong\n")
    stream.writelines(["a sentinel-guard-value-1 b\n"])
    assert inner.getvalue() == f"error: the server said '{REDACTED}' is wrong\na {REDACTED} b\n"
    assert stream.isatty() and stream.encoding == inner.encoding
    with pytest.raises(TypeError):
        stream.write(b"")  # as the real text stream does: click then knows it is a text stream


def test_click_echo_inside_a_command_goes_through_the_guard(capsys: pytest.CaptureFixture[str]) -> None:
    with guarded_output():
        SECRETS.add("sentinel-guard-value-2")  # learnt mid-command (manifests loaded): applies at once
        click.echo("stdout has sentinel-guard-value-2")
        click.echo("stderr has sentinel-guard-value-2", err=True)
        assert isinstance(sys.stdout, ScrubbingStream)
    assert not isinstance(sys.stdout, ScrubbingStream)  # restored
    out, err = capsys.readouterr()
    assert out == f"stdout has {REDACTED}\n" and err == f"stderr has {REDACTED}\n"


def test_schemas_and_help_keep_words_that_only_look_like_credentials() -> None:
    inner = io.StringIO()
    ScrubbingStream(inner).write("Token embeddings are cached; see ?token=abc in the docs\n")
    assert inner.getvalue() == "Token embeddings are cached; see ?token=abc in the docs\n"
