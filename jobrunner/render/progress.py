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
    """One line per event, for logs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.start = time.monotonic()

    def event(self, address: str, what: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.start
        tail = f" ({detail})" if detail else ""
        self.stream.write(scrub_text(f"[{elapsed:7.1f}s] {address}: {what}{tail}") + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(scrub_text(text) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


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
