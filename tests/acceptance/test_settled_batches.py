"""A batch an apply left settled is re-planned from its mark without reading its rows, and every
change to what its rows are made from (or to what state records) is planned exactly as the full
path plans it (jobrunner.settled, reconcile.settledmarks).

The oracle: the same command with the marks file moved aside (the full path: rows read, validated,
expanded, fingerprinted) must print the same plan. Each scenario changes one thing after an apply
of the batch and compares the two, besides checking the plan it should be.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner.providers.adapters.local_builtins import ECHO_VERSION
from tests.helpers.cli import Result, run_cli

MARKS = Path(".jobrunner/settled-batches.json")
BATCH = "PredictionBatch/evals"


def _rows(n: int, tag: str = "p") -> list[dict[str, Any]]:
    return [{"key": f"item-{i:04d}", "prompt": f"{tag} number {i}", "seed": i % 7} for i in range(n)]


def _write_rows(root: Path, rows: list[dict[str, Any]]) -> None:
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_batch(root: Path, name: str = "evals", extra: str = "", file: str = "batch.yaml") -> None:
    (root / file).write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\n"
        f"metadata: {{name: {name}}}\nspec:\n  provider: local\n  version: {ECHO_VERSION}\n"
        f"  inputs_file: prompts.jsonl\n  output_file: out/{name}.jsonl\n{extra}")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The batches whose rows validation reads (the full path), by address."""
    import jobrunner.validate as validate

    seen: list[str] = []
    real = validate.load_batch_items  # type: ignore[attr-defined]

    def counted(resource: Any, root: Path) -> Any:
        seen.append(resource.address)
        return real(resource, root)

    monkeypatch.setattr(validate, "load_batch_items", counted)
    yield seen


def _applied(root: Path, n: int) -> None:
    _write_batch(root)
    _write_rows(root, _rows(n))
    r = run_cli("apply", "--auto-approve", "--parallelism", "20")
    assert r.code == 0, r.output
    assert (root / MARKS).is_file()


def _full_path(root: Path, *args: str) -> Result:
    """The command with the marks moved aside, then put back."""
    aside = root / ".jobrunner" / "marks-aside.json"
    shutil.move(str(root / MARKS), aside)
    try:
        return run_cli(*args)
    finally:
        shutil.move(str(aside), root / MARKS)


def _same_as_full_path(root: Path, reads: list[str], *args: str) -> tuple[Result, list[str]]:
    """The command, after checking it prints what the full path prints; and the batches whose
    rows it read."""
    reads.clear()
    fast = run_cli(*args)
    read = list(reads)
    full = _full_path(root, *args)
    assert (fast.code, fast.stdout, fast.stderr) == (full.code, full.stdout, full.stderr)
    return fast, read


def _changes(result: Result) -> dict[str, str]:
    plan = json.loads(result.stdout)
    return {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "noop"}


def test_one_changed_row_of_1000_is_the_only_change_planned(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 1000)
    reads.clear()
    plan = run_cli("plan", "--detailed-exitcode")
    assert plan.code == 0 and "No changes." in plan.stdout, plan.output
    assert reads == []  # proven settled: the rows were not read
    again = run_cli("apply", "--auto-approve")
    assert again.code == 0 and "No changes." in again.stdout, again.output
    assert reads == []

    rows = _rows(1000)
    rows[500]["prompt"] = "changed"
    _write_rows(workspace, rows)
    plan, read = _same_as_full_path(workspace, reads, "plan", "--detailed-exitcode", "--format", "json")
    assert plan.code == 2
    assert _changes(plan) == {f"{BATCH}[item-0500]": "replace"}
    assert read == [BATCH]  # the full path, for the batch whose bytes changed


@pytest.mark.parametrize("change", ["added", "removed", "reordered", "template", "renamed", "moved manifest"])
def test_any_change_to_the_rows_or_template_plans_as_the_full_path(workspace: Path, reads: list[str],
                                                                   change: str) -> None:
    _applied(workspace, 40)
    rows = _rows(40)
    expected: dict[str, str]
    if change == "added":
        rows.append({"key": "item-9999", "prompt": "new", "seed": 1})
        expected = {f"{BATCH}[item-9999]": "create"}
    elif change == "removed":
        del rows[7]
        expected = {f"{BATCH}[item-0007]": "forget"}
    elif change == "reordered":
        rows.reverse()
        expected = {}
    elif change == "template":
        _write_batch(workspace, extra="  input_defaults: {seed: 3}\n")
        for r in rows:
            r.pop("seed")
        expected = {f"{BATCH}[{r['key']}]": "replace" for r in rows if int(r["key"][-4:]) % 7 != 3}
    elif change == "renamed":
        _write_batch(workspace, name="evals2")
        expected = {**{f"{BATCH}[{r['key']}]": "forget" for r in rows},
                    **{f"PredictionBatch/evals2[{r['key']}]": "create" for r in rows}}
    else:
        (workspace / "batch.yaml").rename(workspace / "moved.yaml")
        expected = {}
    _write_rows(workspace, rows)
    plan, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert plan.code == 0, plan.output
    assert _changes(plan) == expected
    assert read  # none of these is proven settled


def test_state_that_no_longer_records_a_row_settled_plans_it(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 30)
    assert run_cli("state", "rm", f"{BATCH}[item-0003]").code == 0
    plan, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert _changes(plan) == {f"{BATCH}[item-0003]": "create"}
    assert read == [BATCH]


def test_replace_and_target_take_the_full_path(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 30)
    reads.clear()
    one = f"{BATCH}[item-0004]"
    plan = run_cli("plan", "--format", "json", "--replace", one)
    assert _changes(plan) == {one: "replace"}, plan.output
    assert reads
    reads.clear()
    targeted = run_cli("plan", "--format", "json", "--target", one)
    assert targeted.code == 0 and _changes(targeted) == {}, targeted.output
    assert reads


def test_a_mark_of_another_jobrunner_version_is_not_believed(workspace: Path, reads: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import jobrunner.settled as settled

    _applied(workspace, 20)
    monkeypatch.setattr(settled, "SETTLED_FORMAT", "jobrunner 0.0.1 settled 1")
    reads.clear()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert reads == [BATCH]


def test_a_damaged_marks_file_costs_one_full_plan(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 20)
    marks = workspace / MARKS
    data = json.loads(marks.read_text())
    data["batches"][BATCH]["keys"][0] = "item-0001"  # keys that do not digest to the recorded rows
    marks.write_text(json.dumps(data))
    reads.clear()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert reads == [BATCH]
    marks.write_text("{not json")
    reads.clear()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert reads == [BATCH]
    # The next apply marks it again.
    assert run_cli("apply", "--auto-approve").code == 0
    reads.clear()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert reads == []


@pytest.mark.parametrize("rows, extra", [
    ([{"key": "a", "prompt": "costs $5"}], ""),  # a $ in the rows: a reference or {$file} could hide there
    ([{"key": "a", "prompt": "x", "api_token": "s3cr3t-value-123"}], ""),  # a secret-named input
    ([{"key": "a", "prompt": "x"}], "  webhook: https://example.com/hook\n"),  # a webhook to register
])
def test_batches_a_mark_cannot_cover_are_never_marked(workspace: Path, rows: list[dict[str, Any]],
                                                      extra: str) -> None:
    _write_batch(workspace, extra=extra)
    _write_rows(workspace, rows)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    marks = workspace / MARKS
    assert not marks.exists() or BATCH not in json.loads(marks.read_text())["batches"]


def test_json_plan_of_a_settled_batch_shows_each_request(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 25)
    plan, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert plan.code == 0
    assert read == []  # validation read no rows; the requests were read from them when shown
    shown = json.loads(plan.stdout)["changes"]
    assert len(shown) == 25


def test_an_apply_leaves_the_output_files_mark_found_by_its_quick_digest(workspace: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the state's decoded copy left by the apply (here for a small state), the first
    no-change apply after it proves the output file by the quick digest, not the full one."""
    import jobrunner.reconcile.outputmarks as outputmarks
    from jobrunner.state import loadcache
    from jobrunner.state import local_file as lf

    monkeypatch.setattr(loadcache, "MIN_ADDRESSES", 1)
    monkeypatch.setattr(lf, "_CACHED_MIN_BYTES", 0)
    _applied(workspace, 30)
    assert (workspace / ".jobrunner" / "state.json.decoded").is_file()
    (mark,) = json.loads((workspace / ".jobrunner" / "output-files.json").read_text())["files"].values()
    assert "quick" in mark

    def full_digest(*_a: Any) -> None:
        raise AssertionError("the output file's mark was checked by its full digest")

    monkeypatch.setattr(outputmarks, "_recorded_digest", full_digest)
    again = run_cli("apply", "--auto-approve")
    assert again.code == 0 and "No changes." in again.stdout, again.output
    rows = (workspace / "out" / "evals.jsonl").read_text().splitlines()
    assert len(rows) == 30 and all(json.loads(r)["status"] == "succeeded" for r in rows)


def test_a_changed_version_or_renamed_key_plans_as_the_full_path(workspace: Path, reads: list[str]) -> None:
    _applied(workspace, 20)
    rows = _rows(20)
    rows[3]["key"] = "item-x003"  # same content under another key
    _write_rows(workspace, rows)
    plan, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert _changes(plan) == {f"{BATCH}[item-0003]": "forget", f"{BATCH}[item-x003]": "create"}
    assert read == [BATCH]
    _write_rows(workspace, _rows(20))
    batch = workspace / "batch.yaml"
    batch.write_text(batch.read_text().replace(ECHO_VERSION, "1" * 64))
    _, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert read == [BATCH]


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_an_output_file_damaged_by_hand_is_rewritten(workspace: Path, reads: list[str], damage: str) -> None:
    _applied(workspace, 20)
    out = workspace / "out" / "evals.jsonl"
    before = out.read_text()
    if damage == "deleted":
        out.unlink()
    else:
        out.write_text(before.replace("number 3", "number 33"))
    _same_as_full_path(workspace, reads, "plan", "--format", "json")
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    assert out.read_text() == before


def test_marks_outlive_neither_a_destroy_nor_a_second_batch_on_the_same_rows(workspace: Path,
                                                                           reads: list[str]) -> None:
    _applied(workspace, 20)
    _write_batch(workspace, name="evals2", file="b2.yaml")  # the same inputs file, a new batch
    plan, _ = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert _changes(plan) == {f"PredictionBatch/evals2[{r['key']}]": "create" for r in _rows(20)}
    (workspace / "b2.yaml").unlink()
    marks = (workspace / MARKS).read_text()
    assert run_cli("destroy", "--auto-approve").code == 0
    (workspace / MARKS).write_text(marks)  # a mark put back over a state that no longer has the rows
    plan, read = _same_as_full_path(workspace, reads, "plan", "--format", "json")
    assert _changes(plan) == {f"{BATCH}[{r['key']}]": "create" for r in _rows(20)}
    assert read == [BATCH]
