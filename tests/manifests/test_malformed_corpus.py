"""The malformed-manifest corpus: each file under cases/ is wrong in one way, and says how.

The first line of every case is `# expect: <line or file:line> | key word | key word ...`. The case
passes when `jobrunner validate <case>` exits 1 with an error positioned at that file and line whose
message holds every key word, and prints no traceback.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.workspace import display_path, find_workspace
from tests.helpers.cli import run_cli, run_process

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(p for p in CASES.glob("*.yaml"))
# Diagnostics name files relative to the workspace root, which is found from CASES (the
# repository root, through its jobrunner.yaml): the `# expect:` lines are relative to CASES.
PREFIX = (display_path(CASES, find_workspace(CASES)).rstrip("/") + "/").removeprefix("./")


def expectation(case: Path) -> tuple[str, int, list[str]]:
    first = case.read_bytes().split(b"\n", 1)[0].decode("utf-8-sig")
    assert first.startswith("# expect:"), f"{case.name}: first line must be '# expect: ...'"
    where, *words = [part.strip() for part in first[len("# expect:"):].split("|")]
    file, _, line = where.rpartition(":")
    return PREFIX + (file or case.name), int(line), [w for w in words if w]


def run_validate(args: list[str]) -> tuple[int, str]:
    """`jobrunner validate ARGS` through the shared CLI helper: the exit code and stdout + stderr."""
    r = run_cli("validate", *args)
    return r.code, r.output


def test_corpus_is_big_enough() -> None:
    assert len(CASE_FILES) >= 30


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_malformed_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    file, line, words = expectation(case)
    code, output = run_validate([case.name])
    assert code == 1, output
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.startswith(f"{file}:{line}:") and " warning:" not in ln]
    assert lines, f"no error at {file}:{line} in:\n{output}"
    assert any(all(w in ln for w in words) for ln in lines), f"expected {words} at {file}:{line} in:\n{output}"


def test_whole_corpus_in_one_run_reports_every_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """All files at once: every file has an error, lines sorted by file, exit 1.

    (Cases re-use names such as Training/t, so together they also collide as duplicate addresses;
    the exact expectations are checked one file at a time above.)
    """
    monkeypatch.chdir(CASES)
    code, output = run_validate([c.name for c in CASE_FILES])
    assert code == 1
    error_files = [ln.split(":", 1)[0] for ln in output.splitlines() if ln and not ln.endswith(".")]
    assert error_files == sorted(error_files)
    for case in CASE_FILES:
        assert f"\n{PREFIX}{case.name}:" in "\n" + output


def test_corpus_through_the_real_command_line() -> None:
    """The installed entry point: exit 1, positioned messages, never a traceback."""
    proc = run_process(["validate", "."], CASES, timeout=60)
    assert proc.code == 1
    assert "Traceback" not in proc.output
    assert "42_billion_laughs.yaml:2:1:" in proc.stdout
    assert "41_not_utf8.yaml:3:" in proc.stdout
