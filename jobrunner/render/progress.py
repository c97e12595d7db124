"""Apply progress: a live table on a terminal, one line per event otherwise (CI logs).

The executor reports events (`created`, `running`, `succeeded`, `failed`, `retrying`, ...) per
address; this module only decides how they look. The line format is stable and greppable:
`[   3.2s] Training/poems-ngram: succeeded (id r8abc…)`. The live table redraws at most a few times
a second, in place, and is replaced by the plain summary when apply ends.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from jobrunner.redact import scrub_text

_DONE = {"succeeded", "failed", "canceled", "aborted", "gone", "skipped", "forgotten", "noop", "adopted-done"}


class LineProgress:
    """One line per event, for logs.

    A large batch would flood a CI log with three lines per item, so once a batch has shown
    `item_lines` item events, its routine item events (created, running, succeeded) are folded into
    one progress line per batch every `summary_every` seconds; failures, retries and errors are
    always printed.
    """

    LOUD = frozenset({"failed", "canceled", "aborted", "gone", "error", "retrying", "skipped", "timeout", "deferred"})

    def __init__(self, stream: TextIO | None = None, *, item_lines: int = 50, summary_every: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.start = time.monotonic()
        self.item_lines = item_lines
        self.summary_every = summary_every
        self._shown: dict[str, int] = {}  # batch -> item events printed
        self._status: dict[str, dict[str, str]] = {}  # batch -> item -> last event
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
        self._status.setdefault(batch, {})[address] = what
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

    def note(self, text: str) -> None:
        self.stream.write(scrub_text(text) + "\n")
        self.stream.flush()

    def close(self) -> None:
        for batch, shown in self._shown.items():
            if shown >= self.item_lines:
                self._summary(batch)


class TableProgress:
    """A live table of every address touched, redrawn in place (ANSI cursor movement)."""

    MAX_ROWS = 30

    def __init__(self, stream: TextIO | None = None, *, min_redraw: float = 0.2) -> None:
        self.stream = stream or sys.stdout
        self.start = time.monotonic()
        self.rows: dict[str, tuple[str, str, float]] = {}
        self.notes: list[str] = []
        self._drawn_lines = 0
        self._last_draw = 0.0
        self.min_redraw = min_redraw

    def event(self, address: str, what: str, detail: str = "") -> None:
        self.rows[address] = (what, detail, time.monotonic())
        self._draw()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._draw(force=True)

    def _lines(self) -> list[str]:
        width = max((len(a) for a in self.rows), default=7)
        active = [a for a, (w, _, _) in self.rows.items() if w not in _DONE]
        done = [a for a in self.rows if a not in active]
        shown = (active + done)[: self.MAX_ROWS]
        lines = [f"{'ADDRESS':<{width}}  {'STATUS':<10}  DETAIL"]
        for a in shown:
            what, detail, _ = self.rows[a]
            lines.append(f"{a:<{width}}  {what:<10}  {detail}")
        hidden = len(self.rows) - len(shown)
        counts: dict[str, int] = {}
        for what, _, _ in self.rows.values():
            counts[what] = counts.get(what, 0) + 1
        summary = ", ".join(f"{n} {w}" for w, n in sorted(counts.items()))
        if hidden:
            summary += f" ({hidden} more not shown)"
        lines.append(f"[{time.monotonic() - self.start:6.1f}s] {summary}")
        return self.notes[-5:] + lines

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_redraw:
            return
        self._last_draw = now
        out = []
        if self._drawn_lines:
            out.append(f"\x1b[{self._drawn_lines}F\x1b[J")  # up N lines, clear to end of screen
        lines = self._lines()
        out.append("\n".join(scrub_text(line) for line in lines) + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn_lines = len(lines)

    def close(self) -> None:
        self._draw(force=True)


def make_progress(stream: TextIO | None = None, *, tty: bool | None = None) -> LineProgress | TableProgress:
    stream = stream or sys.stdout
    if tty is None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
    return TableProgress(stream) if tty else LineProgress(stream)
