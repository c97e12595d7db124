"""`logs --follow` prints only what is new, also once every fetch is a truncated tail."""
from __future__ import annotations

from jobrunner.providers.bodies import truncation_marker
from jobrunner.render.logs import log_increment


def _tail(log: str, keep: int) -> str:
    return truncation_marker(len(log) - keep, keep) + log[-keep:] if len(log) > keep else log


def test_a_growing_short_log_prints_the_new_lines() -> None:
    assert log_increment("", "a\n") == ("a\n", True)
    assert log_increment("a\n", "a\nb\n") == ("b\n", True)
    assert log_increment("a\nb\n", "rewritten\n") == ("rewritten\n", False)


def test_a_truncated_log_prints_only_what_follows_the_printed_end() -> None:
    keep = 10_000
    printed = ""
    out = []
    for upto in range(1000, 5001, 700):
        text = _tail("".join(f"line {i}\n" for i in range(upto)), keep)
        new, continues = log_increment(printed, text)
        assert continues
        out.append(new)
        printed = text
    joined = "".join(out)
    assert printed.startswith("[jobrunner: log truncated:")  # later fetches were tails
    assert "[jobrunner: log truncated:" not in joined  # yet each printed only what was new
    assert joined == "".join(f"line {i}\n" for i in range(4500))  # no gap, no repeat


def test_a_gap_larger_than_what_is_kept_shows_the_marker_again() -> None:
    first = _tail("x\n" * 10 + "".join(f"{i}\n" for i in range(100)), 50)
    later = _tail("".join(f"{i}\n" for i in range(100, 10000)), 50)
    assert log_increment(first, later) == (later, False)
