"""Ways out, end to end (issue 10 item 4): the real CLI against the real local platform.

- renaming a running batch with a `moved:` entry: 0 canceled, 0 created, the jobs keep running and
  finish under the new address, and the new output file is complete;
- adding `key`s to unkeyed rows with item moves: the same;
- `jobrunner state mv` of an item and of a whole batch, and its refusals;
- `apply --replace` of a succeeded item re-runs exactly that item.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Platform
from tests.helpers.cli import run_cli, run_process

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def batch(name: str, version: str, rows: list[dict], output: str | None = None) -> str:
    items = "\n".join(f"    - {json.dumps(r)}" for r in rows)
    out = f"  output_file: {output}\n" if output else ""
    return (f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: local\n  version: {version}\n  inputs:\n{items}\n{out}")


def addresses(root: Path) -> dict[str, Any]:
    return json.loads((root / ".jobrunner" / "state.json").read_text())["addresses"]


def add_moves(root: Path, *moves: tuple[str, str]) -> None:
    cfg = root / "jobrunner.yaml"
    lines = "".join(f"  - {{from: '{a}', to: '{b}'}}\n" for a, b in moves)
    cfg.write_text(cfg.read_text() + "moved:\n" + lines)


def predictions(platform: Platform) -> list[dict[str, Any]]:
    """Every prediction the platform holds (all pages)."""
    out: list[dict[str, Any]] = []
    with platform.client() as c:
        url: str | None = "/v1/predictions"
        while url:
            page = c.get(url).json()
            out.extend(page["results"])
            url = page.get("next")
    return out


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # waits on running jobs
def test_renaming_a_running_batch_with_a_moved_entry_keeps_its_jobs(workspace: Path, platform: Platform):
    rows = [{"key": k, "seconds": 6} for k in ("a", "b", "c")]
    (workspace / "jobs.yaml").write_text(batch("naps", SLEEP, rows, "out/naps.jsonl"))
    r = run_cli("apply", "--auto-approve", "--no-wait")
    assert r.code == 0, r.output
    before = addresses(workspace)
    assert {st["status"] for st in before.values()} <= {"pending", "running"}
    ids = {a.split("[")[1]: st["remote_id"] for a, st in before.items()}
    total = len(predictions(platform))

    # Rename the batch (and its output file); say it is the same batch.
    (workspace / "jobs.yaml").write_text(batch("sleepers", SLEEP, rows, "out/sleepers.jsonl"))
    add_moves(workspace, ("PredictionBatch/naps", "PredictionBatch/sleepers"))
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 2, r.output
    for k in ("a", "b", "c"):
        assert f" -> PredictionBatch/sleepers[{k}]  (moved from PredictionBatch/naps[{k}]" in r.stdout
    assert "; still running (" in r.stdout or "; still pending (" in r.stdout
    assert "Plan: 0 to create, 0 to replace, 0 to retry, 0 to cancel, 0 to forget, 3 to move, 0 waiting." in r.stdout
    plan_doc = json.loads(run_cli("plan", "--format", "json").stdout)
    assert {(m["from"], m["to"]) for m in plan_doc["moves"]} == {
        (f"PredictionBatch/naps[{k}]", f"PredictionBatch/sleepers[{k}]") for k in "abc"}
    assert addresses(workspace) == before  # plan never writes state

    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    after = addresses(workspace)
    assert sorted(after) == [f"PredictionBatch/sleepers[{k}]" for k in "abc"]
    for k, st in ((a.split("[")[1], st) for a, st in after.items()):
        assert st["remote_id"] == ids[k] and st["status"] == "succeeded"
        assert len(st["history"]) == 1 and st["file"] == "jobs.yaml"
    preds = predictions(platform)
    assert len(preds) == total  # 0 created
    assert not [p for p in preds if p["id"] in ids.values() and p["status"] != "succeeded"]  # 0 canceled
    out = rows_of(workspace / "out" / "sleepers.jsonl")
    assert sorted(x["key"] for x in out) == ["a", "b", "c"] and {x["status"] for x in out} == {"succeeded"}

    # The moved entry may stay: the move is done, the plan is clean.
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 0, r.output


def test_adding_keys_to_rows_with_moves_keeps_the_jobs(workspace: Path, platform: Platform):
    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"text": "hello"}, {"text": "bye"}], "out/g.jsonl"))
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    before = addresses(workspace)
    by_text = {st["inputs"]["input"]["text"]: a for a, st in before.items()}
    total = len(predictions(platform))

    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"key": "hi", "text": "hello"},
                                                               {"key": "bye", "text": "bye"}], "out/g.jsonl"))
    r = run_cli("plan")
    assert "2 to cancel" in r.stdout or "2 to forget" in r.stdout, r.output  # without moves: removed + created
    add_moves(workspace, (by_text["hello"], "PredictionBatch/greet[hi]"),
              (by_text["bye"], "PredictionBatch/greet[bye]"))
    r = run_cli("plan")
    assert r.code == 0, r.output
    assert "0 to create" in r.stdout and "0 to forget" in r.stdout and "2 to move" in r.stdout
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    after = addresses(workspace)
    assert after["PredictionBatch/greet[hi]"]["remote_id"] == before[by_text["hello"]]["remote_id"]
    assert after["PredictionBatch/greet[bye]"]["remote_id"] == before[by_text["bye"]]["remote_id"]
    assert len(after) == 2 and len(predictions(platform)) == total
    out = rows_of(workspace / "out" / "g.jsonl")
    assert {(x["key"], x["status"]) for x in out} == {("hi", "succeeded"), ("bye", "succeeded")}


def test_a_bad_moved_list_is_an_error_with_its_line_and_nothing_is_sent(workspace: Path, platform: Platform):
    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "x"}]))
    add_moves(workspace, ("PredictionBatch/greet", "PredictionBatch/other"), ("Model/m", "Model/n"))
    total = len(predictions(platform))
    for cmd in (("validate",), ("plan",), ("apply", "--auto-approve")):
        r = run_cli(*cmd)
        assert r.code == 1, r.output
        assert "jobrunner.yaml:5:" in r.output and "PredictionBatch/greet is still defined (jobs.yaml:1)" in r.output
        assert "jobrunner.yaml:6:" in r.output and "Model addresses are not moved" in r.output
        assert "Traceback" not in r.output
    assert len(predictions(platform)) == total


def test_state_mv_of_a_whole_batch_and_of_an_item(workspace: Path, platform: Platform):
    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}]))
    assert run_cli("apply", "--auto-approve").code == 0
    before = addresses(workspace)

    # Whole batch: every item, one save; then the manifest rename plans nothing.
    r = run_cli("state", "mv", "PredictionBatch/greet", "PredictionBatch/hello")
    assert r.code == 0, r.output
    assert "Moved PredictionBatch/greet[a] to PredictionBatch/hello[a]" in r.stdout
    assert "Successfully moved 2 address(es)" in r.stdout
    after = addresses(workspace)
    assert sorted(after) == ["PredictionBatch/hello[a]", "PredictionBatch/hello[b]"]
    for k in "ab":
        old, new = before[f"PredictionBatch/greet[{k}]"], after[f"PredictionBatch/hello[{k}]"]
        assert new == {**old, "address": f"PredictionBatch/hello[{k}]"}  # the whole record moved
    (workspace / "jobs.yaml").write_text(batch("hello", ECHO, [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}]))
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 0, r.output

    # One item: its key changed in the manifest.
    (workspace / "jobs.yaml").write_text(batch("hello", ECHO, [{"key": "first", "text": "x"},
                                                               {"key": "b", "text": "y"}]))
    r = run_cli("state", "mv", "PredictionBatch/hello[a]", "PredictionBatch/hello[first]")
    assert r.code == 0, r.output
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 0, r.output

    # Refusals: nothing changes, exit 1, a clear message.
    snapshot = addresses(workspace)
    r = run_cli("state", "mv", "PredictionBatch/nope", "PredictionBatch/x")
    assert r.code == 1 and "PredictionBatch/nope is not in state; nothing was moved" in r.output
    r = run_cli("state", "mv", "PredictionBatch/hello[first]", "PredictionBatch/hello[b]")
    assert r.code == 1 and "PredictionBatch/hello[b] already exists in state" in r.output
    r = run_cli("state", "mv", "PredictionBatch/hello", "PredictionBatch/hello[x]")
    assert r.code == 1 and "a whole batch moves to a whole batch" in r.output
    assert addresses(workspace) == snapshot
    assert "Traceback" not in r.output


def test_replace_reruns_exactly_the_named_succeeded_item(workspace: Path, platform: Platform):
    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}],
                                               "out/g.jsonl"))
    assert run_cli("apply", "--auto-approve").code == 0
    before = addresses(workspace)
    total = len(predictions(platform))

    r = run_cli("plan", "--detailed-exitcode", "--replace", "PredictionBatch/greet[a]")
    assert r.code == 2, r.output
    assert "-/+ PredictionBatch/greet[a]  (replace requested)" in r.stdout
    assert "greet[b]" not in r.stdout
    r = run_cli("apply", "--auto-approve", "--replace", "PredictionBatch/greet[a]")
    assert r.code == 0, r.output
    after = addresses(workspace)
    a, b = after["PredictionBatch/greet[a]"], after["PredictionBatch/greet[b]"]
    assert a["remote_id"] != before["PredictionBatch/greet[a]"]["remote_id"] and len(a["history"]) == 2
    assert a["status"] == "succeeded" and b == before["PredictionBatch/greet[b]"]
    assert len(predictions(platform)) == total + 1  # exactly one job re-ran
    assert run_cli("plan", "--detailed-exitcode").code == 0  # and it converged again

    r = run_cli("apply", "--auto-approve", "--replace", "PredictionBatch/nope")
    assert r.code == 1 and "--replace PredictionBatch/nope: no such address" in r.output
    assert len(predictions(platform)) == total + 1


def test_a_saved_plan_carries_replace_and_moves(workspace: Path, platform: Platform):
    (workspace / "jobs.yaml").write_text(batch("greet", ECHO, [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}]))
    assert run_cli("apply", "--auto-approve").code == 0
    (workspace / "jobs.yaml").write_text(batch("hi", ECHO, [{"key": "a", "text": "x"}, {"key": "b", "text": "y"}]))
    add_moves(workspace, ("PredictionBatch/greet", "PredictionBatch/hi"))
    r = run_cli("plan", "--replace", "PredictionBatch/hi[b]", "--out", "p.json")
    assert r.code == 0, r.output
    saved = json.loads((workspace / "p.json").read_text())
    assert saved["replace"] == ["PredictionBatch/hi[b]"]
    assert {c["address"]: c.get("moved_from") for c in saved["changes"]} == {
        "PredictionBatch/hi[a]": "PredictionBatch/greet[a]", "PredictionBatch/hi[b]": "PredictionBatch/greet[b]"}
    r = run_cli("apply", "p.json", "--replace", "PredictionBatch/hi[a]")
    assert r.code == 1 and "--replace cannot be combined with a saved plan" in r.output
    total = len(predictions(platform))
    r = run_cli("apply", "p.json")
    assert r.code == 0, r.output
    st = addresses(workspace)
    assert sorted(st) == ["PredictionBatch/hi[a]", "PredictionBatch/hi[b]"]
    assert len(st["PredictionBatch/hi[b]"]["history"]) == 2 and len(st["PredictionBatch/hi[a]"]["history"]) == 1
    assert len(predictions(platform)) == total + 1
    # Applying the same saved plan again: the moves are done, so it is stale (exit 3), nothing runs.
    r = run_cli("apply", "p.json")
    assert r.code == 3, r.output
    assert len(predictions(platform)) == total + 1


@pytest.mark.slow  # a kill -9 case
def test_kill_9_while_recording_moves_loses_and_repeats_nothing(workspace: Path, platform: Platform):
    """A crash in the middle of the save that records the moves, or right after it: the next apply
    finds the jobs at their old or new addresses, never twice, and finishes them under the new name."""
    import os
    import signal

    from tests.acceptance.conftest import REPO

    rows = [{"key": k, "seconds": 2} for k in ("a", "b")]
    (workspace / "jobs.yaml").write_text(batch("naps", SLEEP, rows, "out/naps.jsonl"))
    assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
    ids = {a.split("[")[1]: st["remote_id"] for a, st in addresses(workspace).items()}
    total = len(predictions(platform))
    (workspace / "jobs.yaml").write_text(batch("sleepers", SLEEP, rows, "out/sleepers.jsonl"))
    add_moves(workspace, ("PredictionBatch/naps", "PredictionBatch/sleepers"))
    for point, moved_on_disk in (("state.tmp_partial", False), ("moves.saved", True)):
        env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_TEST_CRASH_AT": point}
        proc = run_process(["apply", "--auto-approve"], workspace, env)
        assert proc.code == -signal.SIGKILL, proc.output
        st = addresses(workspace)
        prefix = "PredictionBatch/sleepers" if moved_on_disk else "PredictionBatch/naps"
        assert sorted(st) == [f"{prefix}[a]", f"{prefix}[b]"]
        assert {k: s["remote_id"] for k, s in ((a.split("[")[1], s) for a, s in st.items())} == ids
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    st = addresses(workspace)
    assert sorted(st) == ["PredictionBatch/sleepers[a]", "PredictionBatch/sleepers[b]"]
    assert all(s["status"] == "succeeded" and len(s["history"]) == 1 for s in st.values())
    assert len(predictions(platform)) == total
    assert sorted(x["key"] for x in rows_of(workspace / "out" / "sleepers.jsonl")) == ["a", "b"]
