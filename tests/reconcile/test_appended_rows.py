"""The end-of-apply rewrite of a batch's output file copies the rows this run appended
(`reconcile/appended.py`): the file comes out byte for byte as when every row is made again, and
whenever a copied row could differ (the file changed, an item ended twice, other secrets) every
row is made again instead."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.plan_types import CREATE, NOOP, Plan, PlannedChange
from jobrunner.reconcile import appended as appended_mod
from jobrunner.reconcile.outputfiles import OutputAppender, write_output_files
from jobrunner.resources import JOB_PREDICTION, DesiredJob, Resource
from jobrunner.state.model import AddressState, StateDoc

# Out of manifest order, and a key JSON escapes (a quote), an item ended before this run (d).
KEYS = ["a", "b", 'c"q', "d", "e"]
ENDING = ["e", 'c"q', "a", "b"]  # the order items end in this run


class _Quiet:
    def note(self, _text: str) -> None:
        pass


def _world(root: Path) -> tuple[dict[str, Resource], dict[str, DesiredJob], StateDoc, Plan]:
    (root / "batch.yaml").write_text("# stands for the manifest\n")
    batch = Resource(kind="PredictionBatch", name="b", spec={"output_file": "out/b.jsonl"}, file="batch.yaml", line=1)
    jobs = {}
    for k in KEYS:
        inp = {"text": f"in-{k}", "n": len(k)}
        job = DesiredJob(address=f"PredictionBatch/b[{k}]", resource_address=batch.address, job_kind=JOB_PREDICTION,
                         provider="local", file="batch.yaml", request={"input": inp}, fingerprint=f"fp-{k}",
                         material={"input": inp, "provider": "local"})
        jobs[job.address] = job
    doc = StateDoc(serial=3, lineage="l")
    d = jobs["PredictionBatch/b[d]"]
    doc.addresses[d.address] = _ended(d, "before this run")
    plan = Plan(changes=[PlannedChange(address=a, action=NOOP if a == d.address else CREATE, reason="", job=j,
                                       prior=None) for a, j in jobs.items()])
    return {batch.address: batch}, jobs, doc, plan


def _ended(job: DesiredJob, text: str) -> AddressState:
    return AddressState(address=job.address, kind="PredictionBatch", job_kind=JOB_PREDICTION, provider="local",
                        file="batch.yaml", status="succeeded",
                        outputs={"output": {"text": text, "z": 1, "a": [2]}, "metrics": {"t": 1.5}})


def _run(root: Path, *, twice: bool = False) -> tuple[OutputAppender, dict[str, DesiredJob], StateDoc, dict]:
    resources, jobs, doc, plan = _world(root)
    appender = OutputAppender(root, resources, jobs, doc, plan)
    for k in ENDING:
        job = jobs[f"PredictionBatch/b[{k}]"]
        doc.addresses[job.address] = st = _ended(job, f"out-{k}")
        appender.item_ended(job, st)
    if twice:
        appender.item_ended(jobs["PredictionBatch/b[a]"], doc.addresses["PredictionBatch/b[a]"])
    return appender, jobs, doc, resources


def _fresh_file(root: Path, resources: dict, jobs: dict, doc: StateDoc) -> bytes:
    """The file as written when every row is made again (no appended rows handed over)."""
    write_output_files(root, resources, jobs.values(), doc, {"PredictionBatch/b"}, _Quiet())
    return (root / "out" / "b.jsonl").read_bytes()


def _copying(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rewrites that copied appended rows."""
    copied: list[int] = []
    real = appended_mod.reused_lines

    def counting(*args, **kwargs):
        yield from real(*args, **kwargs)
        copied.append(1)
    monkeypatch.setattr("jobrunner.reconcile.outputfiles.reused_lines", counting)
    return copied


def test_the_rewrite_copies_appended_rows_and_matches_making_every_row(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    appender, jobs, doc, resources = _run(tmp_path)
    out = tmp_path / "out" / "b.jsonl"
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == ["d", *ENDING]
    copied = _copying(monkeypatch)
    files = appender.close()
    assert write_output_files(tmp_path, resources, jobs.values(), doc, {"PredictionBatch/b"}, _Quiet(),
                              files) == ["out/b.jsonl"]
    assert copied == [1]
    got = out.read_bytes()
    assert [json.loads(line)["key"] for line in got.decode().splitlines()] == KEYS
    assert got == _fresh_file(tmp_path, resources, jobs, doc)


def test_an_item_without_a_row_gets_one_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    appender, jobs, doc, resources = _run(tmp_path)
    extra = DesiredJob(address="PredictionBatch/b[f]", resource_address="PredictionBatch/b", job_kind=JOB_PREDICTION,
                       provider="local", file="batch.yaml", request={"input": {"text": "in-f"}}, fingerprint="fp-f")
    jobs[extra.address] = extra
    doc.addresses[extra.address] = _ended(extra, "made at the end")
    copied = _copying(monkeypatch)
    write_output_files(tmp_path, resources, jobs.values(), doc, {"PredictionBatch/b"}, _Quiet(), appender.close())
    assert copied == [1]
    got = (tmp_path / "out" / "b.jsonl").read_bytes()
    assert json.loads(got.splitlines()[-1])["output"]["text"] == "made at the end"
    assert got == _fresh_file(tmp_path, resources, jobs, doc)


@pytest.mark.parametrize("spoil", ["edited", "replaced", "ended twice", "other secrets"])
def test_rows_that_may_differ_are_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spoil: str) -> None:
    appender, jobs, doc, resources = _run(tmp_path, twice=spoil == "ended twice")
    out = tmp_path / "out" / "b.jsonl"
    files = appender.close()
    if spoil == "edited":  # by hand, while the run went on
        out.write_bytes(out.read_bytes().replace(b"out-e", b"OUT-E edited"))
    if spoil == "replaced":
        text = out.read_bytes()
        out.unlink()
        out.write_bytes(text)
    if spoil == "other secrets":
        monkeypatch.setattr("jobrunner.redact.SECRETS._snapshot", None)
    copied = _copying(monkeypatch)
    write_output_files(tmp_path, resources, jobs.values(), doc, {"PredictionBatch/b"}, _Quiet(), files)
    assert copied == []
    got = out.read_bytes()
    assert got == _fresh_file(tmp_path, resources, jobs, doc)
    assert [json.loads(line)["key"] for line in got.decode().splitlines()] == KEYS


def test_a_line_that_is_not_its_items_row_is_never_copied(tmp_path: Path) -> None:
    appender, jobs, doc, resources = _run(tmp_path)
    files = appender.close()
    out = files[tmp_path / "out" / "b.jsonl"]
    out.appended[0], out.appended[1] = out.appended[1], out.appended[0]  # the order no longer matches
    write_output_files(tmp_path, resources, jobs.values(), doc, {"PredictionBatch/b"}, _Quiet(), files)
    got = (tmp_path / "out" / "b.jsonl").read_bytes()
    assert got == _fresh_file(tmp_path, resources, jobs, doc)
