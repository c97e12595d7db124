"""The live view's parts without a terminal: the event vocabulary, the board's numbers, the frame's bounds."""
from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from jobrunner.render.board import Board
from jobrunner.render.events import STATUSES, classify
from jobrunner.render.live import LiveProgress, clock, render_board
from jobrunner.render.progress import LineProgress, make_progress, wants_live


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("word,kind,status", [
    ("created", "create", "pending"), ("adopted", "create", "pending"), ("running", "status", "running"),
    ("waiting", "status", "running"), ("succeeded", "status", "succeeded"), ("failed", "error", "failed"),
    ("skipped", "error", "skipped"), ("error", "error", "error"), ("timeout", "status", "canceling"),
    ("canceled and forgotten", "status", "forgotten"), ("retrying", "retry", "retrying"),
    ("deferred", "status", "deferred"), ("something new", "status", "unknown"),
])
def test_every_executor_word_maps_into_the_one_status_vocabulary(word: str, kind: str, status: str) -> None:
    ev = classify("Training/t", word, "")
    assert (ev.kind, ev.status) == (kind, status) and ev.status in STATUSES


def test_classify_reads_remote_ids_and_attempts() -> None:
    ev = classify("PredictionBatch/b[k1]", "created", "abc123, attempt 2")
    assert (ev.remote_id, ev.attempt, ev.batch) == ("abc123", 2, "PredictionBatch/b")
    ev = classify("PredictionBatch/b[k1]", "retrying", "attempt 3 of 4 after failed: boom")
    assert (ev.attempt, ev.max_attempts) == (3, 4)
    assert classify("Model/m", "exists", "me/m").status == "succeeded"
    assert classify("Training/t", "timeout", "canceling after 5m").detail == "timed out, canceling after 5m"


def test_board_counts_rate_and_eta() -> None:
    board = Board()
    for i in range(4):
        board.apply(classify(f"PredictionBatch/b[k{i}]", "created", f"id{i}"), now=0.0)
    board.batches["PredictionBatch/b"].total = 10
    board.apply(classify("PredictionBatch/b[k0]", "succeeded", "id0"), now=1.0)
    board.apply(classify("PredictionBatch/b[k1]", "failed", "boom"), now=2.0)
    view = board.batches["PredictionBatch/b"]
    assert view.done == 2 and view.counts() == {"pending": 8, "succeeded": 1, "failed": 1}
    assert view.rate(4.0) == pytest.approx(0.5) and view.eta(4.0) == pytest.approx(16.0)
    assert list(view.failures) == [("[k1]", "failed", "boom")]
    assert frame_lines(board, 80, 20)[0] == "Elapsed 1:40 · 2/10 jobs done · 1 did not succeed"


def frame_lines(board: Board, width: int, height: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system=None)
    with console.capture() as cap:
        console.print(render_board(board, 100.0, 0.0, width=width, height=height))
    return cap.get().rstrip("\n").split("\n")


@settings(max_examples=40, deadline=None)
@given(batches=st.integers(0, 12), singles=st.integers(0, 40), failures=st.integers(0, 8),
       width=st.integers(40, 220), height=st.integers(4, 60))
def test_the_frame_fits_any_terminal(batches: int, singles: int, failures: int, width: int, height: int) -> None:
    board = Board()
    for b in range(batches):
        for i in range(5):
            word = "failed" if i < failures else "succeeded"
            board.apply(classify(f"PredictionBatch/a-rather-long-batch-name-{b}[key-{i}]", word, "x" * 300), 1.0)
    for s in range(singles):
        board.apply(classify(f"Training/training-number-{s}", "running", "r8abc"), 1.0)
    lines = frame_lines(board, width, height)
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)


def test_frame_says_what_it_leaves_out() -> None:
    board = Board()
    for s in range(30):
        board.apply(classify(f"Training/t{s:02d}", "running", "r8abc"), 1.0)
    lines = frame_lines(board, 80, 10)
    assert lines[-1].startswith("… and 22 more jobs (22 in progress)")
    assert lines[0] == "Elapsed 1:40 · 0/30 jobs done"


def test_clock() -> None:
    assert (clock(None), clock(8), clock(754), clock(3723)) == ("-:--", "0:08", "12:34", "1:02:03")


def test_make_progress_picks_the_display() -> None:
    tty = Tty()
    assert wants_live(tty, environ={})
    assert not wants_live(tty, environ={"NO_COLOR": "1"})
    assert not wants_live(tty, color=False, environ={})
    assert not wants_live(tty, environ={"TERM": "dumb"})
    assert not wants_live(io.StringIO(), environ={})
    assert isinstance(make_progress(io.StringIO()), LineProgress)
    assert isinstance(make_progress(tty, tty=True), LiveProgress)


def test_live_progress_notes_print_once_and_secrets_never_show(monkeypatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_secretvalue123456")
    out = Tty()
    p = make_progress(out, tty=True)
    p.event("Training/t", "failed", "model said r8_secretvalue123456")
    p.note("Wrote out/x.jsonl (3 item(s))")
    p.close()
    text = out.getvalue()
    assert text.count("Wrote out/x.jsonl") == 1 and "r8_secretvalue123456" not in text and "failed" in text


def test_batch_totals_come_from_the_plan_without_converged_items() -> None:
    from jobrunner.plan_types import CREATE, NOOP, Plan, PlannedChange

    changes = [PlannedChange(f"PredictionBatch/b[k{i}]", CREATE, "new", None, None) for i in range(3)]
    changes += [PlannedChange("PredictionBatch/b[done]", NOOP, "", None, None, quiet=True),
                PlannedChange("Training/t", CREATE, "new", None, None)]
    board = Board()
    board.begin(Plan(changes=changes))
    assert board.batches["PredictionBatch/b"].total == 3 and "Training/t" not in board.batches
    assert board.batches["PredictionBatch/b"].counts() == {"pending": 3}


def test_a_trainings_reported_progress_shows_in_its_row() -> None:
    ev = classify("Training/ft", "running", "tr-8f2c41 (75%)")
    assert (ev.remote_id, ev.progress) == ("tr-8f2c41", 75)
    board = Board()
    board.apply(classify("Training/ft", "created", "tr-8f2c41"), 0.0)
    board.apply(ev, 10.0)
    (line,) = [x for x in frame_lines(board, 80, 10) if x.startswith("Training/ft")]
    assert re.search(r"running\s+1:40\s+75%\s+tr-8f2c41$", line), line


def test_status_of_is_the_status_classify_gives() -> None:
    from jobrunner.render.events import _WORDS, status_of

    for word in [*_WORDS, "never-heard-of"]:
        for address in ("Model/m", "PredictionBatch/b[k1]", "Training/t"):
            for detail in ("", "abc123", "abc123, attempt 2 of 3", "r1 42%"):
                assert status_of(address, word) == classify(address, word, detail).status, (address, word, detail)
