"""The last boundary of the CLI's output: standard output and error, scrubbed of secret values.

Renderers already scrub what they format, but a command prints from many places (warnings, hints,
provider errors, progress lines, `--json` events, click's own messages). `guarded_output()` wraps
`sys.stdout` and `sys.stderr` for the whole command so that every write is passed through
`redact.scrub_values` with the secret values the command knows at that moment
(`redact.SECRETS`: credentials from the environment, sensitive inputs and webhook URL parts of the
manifests once loaded). Only known values are replaced here, no heuristics, so schemas and help
text that merely mention "Token ..." are printed as they are.

The wrapper is a text stream in every other respect (isatty, encoding, flush, fileno), so click
and the live progress table behave exactly as on the real stream.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from jobrunner.redact import scrub_values


class ScrubbingStream:
    """A text stream that scrubs secret values from every `write` before passing it on."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    @property
    def inner(self) -> TextIO:
        return self._inner

    def write(self, text: Any) -> int:
        if isinstance(text, str) and text:
            text = scrub_values(text)
        return self._inner.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # Everything else (isatty, flush, encoding, errors, buffer, fileno) is the real stream's.
        return getattr(self._inner, name)


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """Scrub secret values from everything written to stdout and stderr inside the block."""
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None and not isinstance(sys.stdout, ScrubbingStream):
        sys.stdout = ScrubbingStream(sys.stdout)
    if sys.stderr is not None and not isinstance(sys.stderr, ScrubbingStream):
        sys.stderr = ScrubbingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


__all__ = ["ScrubbingStream", "guarded_output"]
