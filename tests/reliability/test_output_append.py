"""A batch's output file is appended to as items end: a killed apply leaves whole rows, each item
at most once, and the next apply completes the file in manifest order without a duplicate row."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobrunner.state.local_file import read_state_json
from tests.reliability.harness import Platform, apply_until_converged, clean_env, run_cli, run_process
from tests.reliability.workloads import write_workload

pytestmark = pytest.mark.slow  # runs apply as subprocesses and kills them

KEYS = [f"p{i}" for i in range(8)]


def _rows(workspace: Path) -> list[dict]:
    text = (workspace / "out" / "echo.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line a whole row


def _succeeded(workspace: Path) -> set[str]:
    state = read_state_json(workspace / ".jobrunner" / "state.json")
    return {a.split("[")[1].rstrip("]") for a, st in state["addresses"].items()
            if a.startswith("PredictionBatch/echo[") and st["status"] == "succeeded"}


def _kill_at(workspace: Path, platform: Platform, point: str) -> None:
    r = run_process(["apply", "--auto-approve", "--parallelism", "2", "jobs.yaml"], workspace,
                    clean_env(platform, JOBRUNNER_TEST_CRASH_AT=point))
    assert r.code == -signal.SIGKILL, f"{point} was never reached:\n{r.output}"


def test_rows_are_appended_as_items_end_and_a_killed_apply_is_completed_without_duplicates(
        workspace: Path, platform: Platform) -> None:
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    write_workload(workspace, tag, predictions=len(KEYS), trainings=0, output_file=True)

    # Killed right after the 3rd row was appended: the end-of-run write never happened, yet three
    # whole rows are there, each of an item state records as succeeded.
    _kill_at(workspace, platform, "outputs.row_appended:3")
    first = _rows(workspace)
    assert len(first) == 3 and len({r["key"] for r in first}) == 3
    assert {r["key"] for r in first} <= _succeeded(workspace)
    assert all(r["status"] == "succeeded" and r["output"] == r["input"] for r in first)

    # Killed again two rows into the next apply: it started from the rows of the items it left
    # alone (those three), then appended; no item is there twice.
    _kill_at(workspace, platform, "outputs.row_appended:2")
    second = _rows(workspace)
    keys = [r["key"] for r in second]
    assert len(keys) == len(set(keys)) == 5 and set(keys) >= {r["key"] for r in first}
    assert set(keys) <= _succeeded(workspace)

    # The next apply completes it: every item once, in manifest order, as a completed apply writes it.
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    final = _rows(workspace)
    assert [r["key"] for r in final] == KEYS
    assert all(r["status"] == "succeeded" for r in final)
    r = run_cli("plan", "--detailed-exitcode", "jobs.yaml")
    assert r.code == 0, r.output


_NO_ROW_CHECK = (
    "import jobrunner.reconcile.outputfiles as o\n"
    "def refuse(*a):\n    raise SystemExit('checked row by row')\n"
    "o._file_holds = refuse\n"
    "from jobrunner.cli import main\n"
    "main(['apply', '--auto-approve', 'jobs.yaml'])\n")


def _edit_one_output_keeping_the_size(text: str) -> str:
    """The first row's output changed by one character: a file of the same size, other bytes."""
    lines = text.splitlines(keepends=True)
    row = json.loads(lines[0])
    text_out = row["output"]["text"]
    row["output"]["text"] = text_out[:-1] + ("X" if text_out[-1] != "X" else "Y")
    edited = json.dumps(row, ensure_ascii=False) + "\n"
    assert len(edited) == len(lines[0]) and edited != lines[0]
    return "".join([edited, *lines[1:]])


def test_a_converged_apply_repairs_a_file_edited_truncated_or_removed_after_it_was_marked(
        workspace: Path, platform: Platform) -> None:
    """A converged apply skips the row-by-row check only while the file is byte for byte the one it
    marked: an edit of the same size, a truncation, removed rows or a removed file are all repaired."""
    tag = workspace.parent.name[-12:].replace("_", "-").lower()
    write_workload(workspace, tag, predictions=len(KEYS), trainings=0, output_file=True)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    out = workspace / "out" / "echo.jsonl"
    good = out.read_text(encoding="utf-8")
    assert [r["key"] for r in _rows(workspace)] == KEYS
    marks = json.loads((workspace / ".jobrunner" / "output-files.json").read_text(encoding="utf-8"))
    assert marks["files"][str(out)]["size"] == len(good.encode("utf-8"))
    assert tag not in json.dumps(marks)  # digests only, no row content

    # Unchanged: the mark taken by the apply that wrote it spares the row-by-row check (a converged
    # apply whose check would fail the command), and nothing is written (same inode, same bytes).
    inode = out.stat().st_ino
    proc = subprocess.run([sys.executable, "-c", _NO_ROW_CHECK], cwd=workspace, env=clean_env(platform),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "No changes" in proc.stdout, proc.stdout + proc.stderr
    r = run_cli("apply", "--auto-approve", "jobs.yaml")
    assert r.code == 0 and "Wrote" not in r.output, r.output
    assert out.stat().st_ino == inode and out.read_text(encoding="utf-8") == good

    damages = {
        "same size, one output edited": _edit_one_output_keeping_the_size(good),
        "truncated mid-row": good[: len(good) // 2],
        "last rows removed": "".join(good.splitlines(keepends=True)[:3]),
        "emptied": "",
    }
    for what, text in damages.items():
        out.write_text(text, encoding="utf-8")
        r = run_cli("apply", "--auto-approve", "jobs.yaml")
        assert r.code == 0, (what, r.output)
        assert out.read_text(encoding="utf-8") == good, what
    out.unlink()
    r = run_cli("apply", "--auto-approve", "jobs.yaml")
    assert r.code == 0 and out.read_text(encoding="utf-8") == good, r.output
