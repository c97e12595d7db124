"""The marks of batch output files (`reconcile/outputmarks.py`): a converged apply skips the
row-by-row check of a file only while both the file's bytes and everything its rows are made from
are what they were when apply wrote or checked it; any difference falls back to the check."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from jobrunner.providers.base import JobStatus
from jobrunner.reconcile import outputfiles, outputmarks
from jobrunner.reconcile.outputfiles import output_files_due, write_output_files
from jobrunner.reconcile.outputmarks import MARKS_PATH, OutputMarks, RowsKey
from jobrunner.redact import SecretSet
from jobrunner.resources import JOB_PREDICTION, DesiredJob, Resource
from jobrunner.state.model import AddressState, StateDoc

KEYS = ["a", "b", "c"]


class _Quiet:
    def note(self, _text: str) -> None:
        pass


def _world(root: Path) -> tuple[dict[str, Resource], list[DesiredJob], StateDoc]:
    (root / "batch.yaml").write_text("# stands for the manifest\n")
    batch = Resource(kind="PredictionBatch", name="b", spec={"output_file": "out/b.jsonl"}, file="batch.yaml", line=1)
    jobs = [DesiredJob(address=f"PredictionBatch/b[{k}]", resource_address="PredictionBatch/b",
                       job_kind=JOB_PREDICTION, provider="local", file="batch.yaml",
                       request={"input": {"text": f"in-{k}", "api_key": "hidden"}}, fingerprint=f"fp-{k}",
                       sensitive_paths=("api_key",)) for k in KEYS]
    doc = StateDoc(serial=3, lineage="l")
    for job in jobs:
        doc.addresses[job.address] = AddressState(
            address=job.address, kind="PredictionBatch", job_kind=JOB_PREDICTION, provider="local",
            file="batch.yaml", status="succeeded", outputs={"output": {"text": job.address}, "metrics": {"t": 1.5}})
    return {batch.address: batch}, jobs, doc


def _written(root: Path) -> tuple[dict[str, Resource], list[DesiredJob], StateDoc]:
    resources, jobs, doc = _world(root)
    assert write_output_files(root, resources, jobs, doc, {"PredictionBatch/b"}, _Quiet()) == ["out/b.jsonl"]
    return resources, jobs, doc


def _no_row_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object) -> bool:
        raise AssertionError("the file was checked row by row")
    monkeypatch.setattr(outputfiles, "_file_holds", fail)


def test_a_written_file_is_marked_and_then_not_read_row_by_row(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    resources, jobs, doc = _written(tmp_path)
    marks = json.loads((tmp_path / MARKS_PATH).read_text())["files"]
    out = tmp_path / "out" / "b.jsonl"
    assert marks[str(out)]["size"] == out.stat().st_size
    assert "in-a" not in json.dumps(marks) and "hidden" not in json.dumps(marks)
    _no_row_check(monkeypatch)
    assert output_files_due(tmp_path, resources, jobs, doc) == []


def test_a_file_found_right_row_by_row_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resources, jobs, doc = _written(tmp_path)
    (tmp_path / MARKS_PATH).unlink()  # e.g. written by an older jobrunner
    assert output_files_due(tmp_path, resources, jobs, doc) == []  # checked row by row, and marked
    _no_row_check(monkeypatch)
    assert output_files_due(tmp_path, resources, jobs, doc) == []


@pytest.mark.parametrize("change", ["status", "output", "metrics", "error", "input", "sensitive", "order",
                                    "forgotten", "item"])
def test_anything_a_row_is_made_from_that_changed_means_the_check(tmp_path: Path, change: str) -> None:
    resources, jobs, doc = _written(tmp_path)
    st = doc.addresses[jobs[0].address]
    if change == "status":
        st.status = "failed"
    elif change == "output":
        st.outputs["output"] = {"text": "other"}
    elif change == "metrics":
        st.outputs["metrics"] = {"t": 2.5}
    elif change == "error":
        st.error = "boom"
    elif change == "input":
        jobs[0].request["input"]["text"] = "changed"
    elif change == "sensitive":
        jobs[0] = dataclasses.replace(jobs[0], sensitive_paths=("text",))
    elif change == "order":
        jobs.reverse()
    elif change == "forgotten":
        del doc.addresses[jobs[0].address]
    else:
        jobs.append(DesiredJob(address="PredictionBatch/b[d]", resource_address="PredictionBatch/b",
                               job_kind=JOB_PREDICTION, provider="local", file="batch.yaml",
                               request={"input": {"text": "in-d"}}, fingerprint="fp-d"))
    due = output_files_due(tmp_path, resources, jobs, doc)
    assert [p.name for p, _, _ in due] == ["b.jsonl"], change


@pytest.mark.parametrize("damage", ["same size", "truncated", "grown", "removed"])
def test_a_file_changed_behind_the_mark_is_checked_and_rewritten(tmp_path: Path, damage: str) -> None:
    resources, jobs, doc = _written(tmp_path)
    out = tmp_path / "out" / "b.jsonl"
    good = out.read_bytes()
    if damage == "same size":
        out.write_bytes(good.replace(b"in-a", b"in-z"))
    elif damage == "truncated":
        out.write_bytes(good[:-5])
    elif damage == "grown":
        out.write_bytes(good + good.splitlines(keepends=True)[0])
    else:
        out.unlink()
    assert write_output_files(tmp_path, resources, jobs, doc, set(), _Quiet()) == ["out/b.jsonl"]
    assert out.read_bytes() == good


def test_other_secrets_mean_the_check_and_the_mark_holds_no_secret(tmp_path: Path) -> None:
    resources, jobs, doc = _world(tmp_path)
    secret = "s3cr3t-value-of-some-length"
    before, after = SecretSet([secret]), SecretSet([secret, "another-secret-value-1234"])
    key = RowsKey(jobs, doc, before)
    assert key.value == RowsKey(jobs, doc, SecretSet([secret])).value
    assert key.value != RowsKey(jobs, doc, after).value != RowsKey(jobs, doc, SecretSet()).value
    marks = OutputMarks(tmp_path)
    out = tmp_path / "f.jsonl"
    out.write_text("{}\n")
    marks.record(out, key)
    marks.save()
    assert secret not in (tmp_path / MARKS_PATH).read_text()
    assert OutputMarks(tmp_path).holds(out, RowsKey(jobs, doc, before))
    assert not OutputMarks(tmp_path).holds(out, RowsKey(jobs, doc, after))


@pytest.mark.parametrize("marks_text", ["", "{not json", "[]", '{"format": 99, "files": {}}',
                                        '{"format": 1, "files": {"x": 3}}'])
def test_a_damaged_marks_file_only_costs_a_check(tmp_path: Path, marks_text: str) -> None:
    resources, jobs, doc = _written(tmp_path)
    (tmp_path / MARKS_PATH).write_text(marks_text)
    assert output_files_due(tmp_path, resources, jobs, doc) == []  # the file is right: checked, marked
    assert json.loads((tmp_path / MARKS_PATH).read_text())["format"] == 1


def test_the_key_is_the_same_in_the_run_that_wrote_the_file_and_after_state_is_reloaded(tmp_path: Path) -> None:
    """In the run the status is a `JobStatus` and outputs keep the provider's key order; reloaded,
    the status is a str and keys may come back in another order. The rows are the same, so is the key."""
    _, jobs, in_run = _world(tmp_path)
    _, _, reloaded = _world(tmp_path)
    for address, st in in_run.addresses.items():
        st.status = JobStatus.SUCCEEDED
        st.outputs = {"metrics": {"t": 1.5, "a": 0}, "output": {"text": address, "n": 1}}
        reloaded.addresses[address].outputs = {"output": {"n": 1, "text": address}, "metrics": {"a": 0, "t": 1.5}}
    assert RowsKey(jobs, in_run, SecretSet()).value == RowsKey(jobs, reloaded, SecretSet()).value



def _reloaded(doc: StateDoc, change: str = "") -> StateDoc:
    """`doc` as a later command loads it (outputs packed until read), with one recorded field of
    the first address edited in the saved state when `change` says so."""
    out = StateDoc(serial=doc.serial, lineage=doc.lineage)
    for i, (address, st) in enumerate(doc.addresses.items()):
        data = json.loads(json.dumps(st.to_json()))
        if i == 0 and change == "output":
            data["outputs"]["output"] = {"text": "edited"}
        elif i == 0 and change == "metrics":
            data["outputs"]["metrics"] = {"t": 9.5}
        elif i == 0 and change == "status":
            data["status"] = "failed"
        elif i == 0 and change == "error":
            data["error"] = "boom"
        out.addresses[address] = AddressState.from_json(data, pack=True)
    return out


def _no_full_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object) -> None:
        raise AssertionError("the recorded side was decoded and re-encoded")
    monkeypatch.setattr(outputmarks, "_recorded_digest", fail)


def test_a_loaded_state_is_told_unchanged_by_the_quick_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run that wrote the file holds unpacked outputs: its mark has only the full digest. The
    next apply (state loaded, packed) matches it and adds the quick digest; the one after that
    neither decodes the outputs nor reads the file row by row."""
    resources, jobs, doc = _written(tmp_path)
    out = str(tmp_path / "out" / "b.jsonl")
    assert "quick" not in json.loads((tmp_path / MARKS_PATH).read_text())["files"][out]
    _no_row_check(monkeypatch)
    assert output_files_due(tmp_path, resources, jobs, _reloaded(doc)) == []
    assert json.loads((tmp_path / MARKS_PATH).read_text())["files"][out]["quick"]
    _no_full_digest(monkeypatch)
    reloaded = _reloaded(doc)
    assert output_files_due(tmp_path, resources, jobs, reloaded) == []
    assert all(type(outputmarks.stored_outputs(st)) is bytes for st in reloaded.addresses.values())


@pytest.mark.parametrize("change", ["output", "metrics", "status", "error", "file", "input", "forgotten"])
def test_an_edit_behind_a_quick_mark_means_the_check(tmp_path: Path, change: str) -> None:
    """With a quick digest in the mark: a recorded output, metrics, status or error edited in the
    saved state, the output file edited, an input changed or an address forgotten is still seen."""
    resources, jobs, doc = _written(tmp_path)
    assert output_files_due(tmp_path, resources, jobs, _reloaded(doc)) == []  # the quick digest is added
    out = tmp_path / "out" / "b.jsonl"
    assert "quick" in json.loads((tmp_path / MARKS_PATH).read_text())["files"][str(out)]
    reloaded = _reloaded(doc, change)
    if change == "file":
        out.write_bytes(out.read_bytes().replace(b"in-a", b"in-z"))
    elif change == "input":
        jobs[0].request["input"]["text"] = "changed"
    elif change == "forgotten":
        del reloaded.addresses[jobs[0].address]
    due = output_files_due(tmp_path, resources, jobs, reloaded)
    assert [p.name for p, _, _ in due] == ["b.jsonl"], change
