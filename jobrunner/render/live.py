"""The live view of apply and destroy on a terminal: one steady frame, redrawn in place with rich.

Per batch a progress bar with done/total, percentage, rate and ETA, the counts by status and the
latest failures with their errors; per training (or model) its status, elapsed time and progress
percentage when the provider reports one (Emissary). The frame
is built to fit the terminal's height (batches first, then failures, then single jobs, with "... N
more" lines for what does not fit), and rich's `Live` crops anything taller, so the terminal never
scrolls and scrollback never fills with copies of the frame. `rich` does the cursor work (and its
flicker-free redraw, a few times a second) instead of hand-written escape codes.

Notes (an interrupt, a file written) are printed above the frame, once. Everything drawn is
scrubbed of secret values like every other output.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobrunner.redact import scrub_text
from jobrunner.render.board import BatchView, Board, SingleView
from jobrunner.render.events import BAD, STATUSES, classify

if TYPE_CHECKING:
    from jobrunner.plan_types import Plan

STYLES = {"succeeded": "green", "unchanged": "green", "running": "cyan", "pending": "dim", "canceling": "yellow",
          "retrying": "yellow", "deferred": "dim", "skipped": "yellow", "forgotten": "dim",
          "failed": "red", "error": "red", "aborted": "red", "gone": "red", "canceled": "magenta"}
FAILURE_LINES = 3  # per batch, at most, when the terminal has room


def clock(seconds: float | None) -> str:
    """`0:08`, `12:34`, `1:02:03`; `-:--` when unknown."""
    if seconds is None:
        return "-:--"
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _counts_text(view: BatchView) -> Text:
    counts = view.counts()
    text = Text("  ", no_wrap=True, overflow="ellipsis")
    parts = [(n, s) for s in STATUSES if (n := counts.get(s, 0))]
    for i, (n, s) in enumerate(parts):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{n} {s}", style=STYLES.get(s, ""))
    return text


def _bar_row(grid: Table, view: BatchView, now: float, bar_width: int) -> None:
    done, total = view.done, max(view.total, 1)
    rate = view.rate(now)
    grid.add_row(
        Text(view.name, style="bold"),
        ProgressBar(total=total, completed=done, width=bar_width, complete_style="green", finished_style="green"),
        f"{done}/{view.total}", f"{100 * done // total:3d}%",
        f"{rate:.1f}/s" if rate else "-/s",
        "done" if done >= view.total else f"ETA {clock(view.eta(now))}",
    )


def _bar_grid(width: int) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, overflow="ellipsis", max_width=max(12, width // 3))
    grid.add_column(no_wrap=True)
    for justify in ("right", "right", "right", "left"):
        grid.add_column(no_wrap=True, justify=justify)
    return grid


def _failure_line(item: str, status: str, detail: str) -> Text:
    text = Text("  ✗ ", style="red", no_wrap=True, overflow="ellipsis")
    text.append(f"{item} {status}", style=STYLES.get(status, ""))
    if detail and detail != status:
        text.append(f": {detail.splitlines()[0] if detail.strip() else detail}")
    return text


def _single_line(row: SingleView, now: float, name_width: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{row.address:<{name_width}}  ")
    text.append(f"{row.status:<10}", style=STYLES.get(row.status, ""))
    text.append(f"  {clock(row.elapsed(now)):>7}")
    text.append(f"  {row.progress:>3d}%" if row.progress is not None else "      ", style="bold")
    text.append("  " + (row.detail.splitlines()[0] if row.detail.strip() else ""), style="dim")
    return text


def _header(batches: list[BatchView], singles: list[SingleView], elapsed: float) -> Text:
    """`Elapsed 0:08 · 296/502 jobs done · 3 failed`: the whole run in one line."""
    done = sum(b.done for b in batches) + sum(1 for r in singles if r.finished is not None)
    total = sum(b.total for b in batches) + len(singles)
    bad = sum(1 for b in batches for s in b.status.values() if s in BAD) + sum(1 for r in singles if r.status in BAD)
    text = Text(f"Elapsed {clock(elapsed)} · {done}/{total} jobs done", style="bold", no_wrap=True,
                overflow="ellipsis")
    if bad:
        text.append(f" · {bad} did not succeed", style="red")
    return text


def render_board(board: Board, now: float, started: float, *, width: int, height: int) -> RenderableType:
    """The frame: at most `height` lines of at most `width` cells."""
    singles = sorted(board.singles.values(), key=lambda r: (r.finished is not None, r.address))
    batches = list(board.batches.values())
    lines: list[RenderableType] = [_header(batches, singles, now - started)]
    room = max(1, height) - 1
    shown = batches[: max(0, room // 2)]
    if len(shown) < len(batches):
        shown = batches[: max(0, (room - 1) // 2)]
    room -= 2 * len(shown) + (1 if len(shown) < len(batches) else 0)
    failures_wanted = sum(min(len(b.failures), FAILURE_LINES) for b in shown)
    failure_room = min(failures_wanted, room // 2 if singles else room)
    bar_width = max(10, min(40, width - max(12, width // 3) - 34))
    for view in shown:
        grid = _bar_grid(width)
        _bar_row(grid, view, now, bar_width)
        lines += [grid, _counts_text(view)]
        take = min(len(view.failures), FAILURE_LINES, failure_room)
        failure_room -= take
        room -= take
        lines += [_failure_line(*f) for f in list(view.failures)[len(view.failures) - take:]]
    if len(shown) < len(batches):
        lines.append(Text(f"… and {len(batches) - len(shown)} more batches", style="dim"))
    lines += _singles_lines(singles, now, room, width)
    return Group(*lines)


def _singles_lines(singles: list[SingleView], now: float, room: int, width: int) -> list[RenderableType]:
    if room <= 0 or not singles:
        return []
    fit = singles if len(singles) <= room else singles[: room - 1]
    name_width = min(max(len(r.address) for r in fit) if fit else 0, max(12, width // 2))
    out: list[RenderableType] = [_single_line(r, now, name_width) for r in fit]
    if len(fit) < len(singles):
        rest = singles[len(fit):]
        active = sum(1 for r in rest if r.finished is None)
        out.append(Text(f"… and {len(rest)} more jobs ({active} in progress)", style="dim"))
    return out


class LiveProgress:
    """The `ProgressSink` for a terminal: a rich `Live` frame of the `Board`."""

    def __init__(self, console: Console, *, refresh_per_second: float = 4.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.board = Board()
        self.clock = clock
        self.started = clock()
        # The frame is drawn by rich's refresh thread while the event loop feeds the board.
        self._lock = threading.Lock()
        self._live = Live(get_renderable=self._frame, console=console, refresh_per_second=refresh_per_second,
                          transient=False, vertical_overflow="crop", redirect_stderr=False)
        self._running = False

    def _frame(self) -> RenderableType:
        width, height = self.console.size
        with self._lock:
            # One line spare: a frame exactly as tall as the terminal would scroll it when the cursor wraps.
            return render_board(self.board, self.clock(), self.started, width=width, height=max(3, height - 1))

    def _ensure_started(self) -> None:
        if not self._running:
            self._running = True
            self._live.start()

    def begin(self, plan: Plan) -> None:
        # The frame appears with the first event: a run that turns out to do nothing draws none.
        with self._lock:
            self.board.begin(plan)

    def event(self, address: str, what: str, detail: str = "") -> None:
        ev = classify(address, what, scrub_text(detail))
        with self._lock:
            self.board.apply(ev, self.clock())
        self._ensure_started()

    def note(self, text: str) -> None:
        # Printed above the frame while it is live: once, never redrawn.
        self.console.print(Text(scrub_text(text)), soft_wrap=True)

    def close(self) -> None:
        if self._running:
            self._live.refresh()
            self._live.stop()
            self._running = False


__all__ = ["LiveProgress", "clock", "render_board"]
