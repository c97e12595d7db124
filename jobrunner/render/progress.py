"""Apply progress: the live view on a terminal, one line per event otherwise (CI logs, `NO_COLOR`).

The executor reports events (`created`, `running`, `succeeded`, `failed`, `retrying`, ...) per
address through the `ProgressSink` interface (jobrunner.render.events); this module picks the
display. The line format is stable and greppable: `[   3.2s] Training/poems-ngram: succeeded (id
r8abc…)`. The live view (jobrunner.render.live) redraws one frame in place a few times a second.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from jobrunner.redact import scrub_text
from jobrunner.render.events import ProgressSink, status_of

if TYPE_CHECKING:
    from jobrunner.plan_types import Plan


class LineProgress:
    """One line per event, for logs.

    A large batch would flood a CI log with three lines per item, so once a batch has shown
    `item_lines` item events, its routine item events (created, running, succeeded) are folded into
    one progress line per batch every `summary_every` seconds, counting its items by status (the
    vocabulary of `status`: a created item is `pending`); failures, retries and errors are always
    printed.
    """

    LOUD = frozenset({"failed", "canceled", "aborted", "gone", "error", "retrying", "skipped", "timeout", "deferred"})

    def __init__(self, stream: TextIO | None = None, *, item_lines: int = 50, summary_every: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.start = time.monotonic()
        self.item_lines = item_lines
        self.summary_every = summary_every
        self._shown: dict[str, int] = {}  # batch -> item events printed
        self._status: dict[str, dict[str, str]] = {}  # batch -> item -> status (jobrunner.render.events)
        self._last_summary: dict[str, float] = {}

    def _line(self, text: str) -> None:
        self.stream.write(scrub_text(f"[{time.monotonic() - self.start:7.1f}s] {text}") + "\n")
        self.stream.flush()

    def event(self, address: str, what: str, detail: str = "") -> None:
        tail = f" ({detail})" if detail else ""
        batch = address.split("[", 1)[0] if "[" in address else None
        if batch is None:
            self._line(f"{address}: {what}{tail}")
            return
        self._status.setdefault(batch, {})[address] = status_of(address, what)
        shown = self._shown.get(batch, 0)
        if shown < self.item_lines or what in self.LOUD:
            self._shown[batch] = shown + 1
            self._line(f"{address}: {what}{tail}")
            if shown + 1 == self.item_lines:
                self._line(f"{batch}: further routine item events are summarized every {self.summary_every:g}s")
            return
        now = time.monotonic()
        if now - self._last_summary.get(batch, 0.0) >= self.summary_every:
            self._last_summary[batch] = now
            self._summary(batch)

    def _summary(self, batch: str) -> None:
        counts: dict[str, int] = {}
        for what in self._status[batch].values():
            counts[what] = counts.get(what, 0) + 1
        self._line(f"{batch}: " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))

    def begin(self, plan: Plan) -> None:
        """Nothing to set up: each line stands alone."""

    def note(self, text: str) -> None:
        self.stream.write(scrub_text(text) + "\n")
        self.stream.flush()

    def close(self) -> None:
        for batch, shown in self._shown.items():
            if shown >= self.item_lines:
                self._summary(batch)


def wants_live(stream: TextIO, *, color: bool = True, environ: Mapping[str, str] | None = None) -> bool:
    """The live view needs a terminal that moves its cursor: a TTY, not `TERM=dumb`, and no
    `--no-color` or `NO_COLOR` (https://no-color.org: set and not empty), which ask for plain lines."""
    env = os.environ if environ is None else environ
    if not color or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def make_progress(stream: TextIO | None = None, *, tty: bool | None = None, color: bool = True) -> ProgressSink:
    """The live view on a terminal (`jobrunner.render.live`), one line per event otherwise."""
    stream = stream or sys.stdout
    if tty is None:
        tty = wants_live(stream, color=color)
    if not tty:
        return LineProgress(stream)
    from rich.console import Console

    from jobrunner.render.live import LiveProgress

    return LiveProgress(Console(file=stream, force_terminal=True, no_color=not color))
