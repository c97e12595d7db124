"""Pure parts of the reconciler: matching a lost create, outputs, output files, requests, saves."""
from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobrunner.providers.base import FAILED, RUNNING, SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.reconcile.matching import find_match, matches
from jobrunner.reconcile.outputs import batch_key, output_rows, outputs_of, resource_outputs, write_jsonl
from jobrunner.reconcile.requests import create_request, file_markers, request_digest, split_version, upload_files
from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.render.progress import LineProgress, make_progress
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob
from jobrunner.state.model import AddressState, StateDoc

V = "a" * 64
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def job(i: str, *, version: str = V, inp: dict | None = None, at: datetime = NOW, kind: str = "prediction"):
    return RemoteJob(id=i, job_kind=kind, status=RUNNING, created_at=at,
                     input=inp if inp is not None else {"prompt": "x"},
                     model="me/m", version=version)


def req(inp: dict | None = None, kind: str = "prediction") -> CreateRequest:
    return CreateRequest(job_kind=kind, body={"input": inp or {"prompt": "x"}}, model="me/m", version=V)


def test_match_requires_same_version_and_input():
    assert matches(job("1"), req())
    assert not matches(job("1", version="b" * 64), req())
    assert not matches(job("1", inp={"prompt": "y"}), req())
    assert not matches(job("1", kind="training"), req())
    # A remote echoing defaults we did not send still matches; a key we sent must be there.
    assert matches(job("1", inp={"prompt": "x", "seed": 0}), req())
    assert not matches(job("1", inp={}), req())
    assert matches(job("1", inp={"n": 1.0}), req({"n": 1}))
    assert not matches(job("1", inp={"flag": 1}), req({"flag": True}))


def test_file_inputs_match_any_uploaded_url():
    desired = {"input": {"data": {"$file": "d.txt"}, "order": 3}}
    remote = job("1", inp={"data": "https://files/abc", "order": 3})
    assert matches(remote, req({"data": "https://files/other", "order": 3}), desired_body=desired)


def test_find_match_skips_claimed_and_older_jobs_and_prefers_the_earliest():
    cands = [job("new", at=NOW + timedelta(seconds=5)), job("early", at=NOW + timedelta(seconds=1)),
             job("old", at=NOW - timedelta(hours=1)), job("claimed", at=NOW)]
    assert find_match(cands, req(), not_before=NOW, exclude_ids={"claimed"}).id == "early"
    assert find_match(cands, req(), not_before=NOW, exclude_ids={"claimed", "early", "new"}) is None


def test_split_version_and_create_request():
    assert split_version(None, f"me/poems:{V}") == ("me/poems", V)
    assert split_version("x/y", V) == ("x/y", V)
    dj = DesiredJob(address="PredictionBatch/b[k]", resource_address="PredictionBatch/b", job_kind=JOB_PREDICTION,
                    provider="local", file="b.yaml", request={"model": None, "version": f"me/poems:{V}",
                                                              "input": {"p": 1}}, fingerprint="f")
    r = create_request(dj, {"timeout": "2m", "webhook": "https://example.invalid/h"})
    assert (r.model, r.version, r.cancel_after) == ("me/poems", V, "2m")
    assert r.body == {"input": {"p": 1}, "webhook": "https://example.invalid/h"}
    assert request_digest(r) == request_digest(create_request(dj, {"timeout": "2m", "webhook": "https://example.invalid/h"}))


def test_emissary_request_carries_project_and_body_only():
    dj = DesiredJob(address="Training/e", resource_address="Training/e", job_kind=JOB_TRAINING, provider="emissary",
                    file="e.yaml", request={"provider": "emissary", "kind": "training", "project_id": "p1",
                                            "body": {"base_model": "jobrunner-ngram", "train_dataset_id": "d"}},
                    fingerprint="f")
    r = create_request(dj, {})
    assert r.project_id == "p1" and r.body == {"base_model": "jobrunner-ngram", "train_dataset_id": "d"}


def test_uploads_replace_file_markers(tmp_path: Path):
    (tmp_path / "d.txt").write_text("hi")
    seen = []

    async def upload(path: str) -> str:
        seen.append(path)
        return "https://files/1"

    body = {"input": {"data": {"$file": "d.txt"}, "list": [{"$file": "d.txt"}], "n": 1}}
    assert file_markers(body) == {"input.data": "d.txt", "input.list[0]": "d.txt"}
    out = asyncio.run(upload_files(body, upload, [tmp_path]))
    assert out == {"input": {"data": "https://files/1", "list": ["https://files/1"], "n": 1}}
    assert len(seen) == 2


def test_outputs_of_training_prediction_and_failures():
    t = RemoteJob(id="t1", job_kind="training", status=SUCCEEDED, output={"version": f"me/p:{V}", "weights": "w"})
    assert outputs_of("training", t) == {"id": "t1", "version": f"me/p:{V}", "weights": "w"}
    p = RemoteJob(id="p1", job_kind="prediction", status=SUCCEEDED, output="text", metrics={"predict_time": 1})
    assert outputs_of("prediction", p) == {"output": "text", "metrics": {"predict_time": 1}}
    assert outputs_of("prediction", RemoteJob(id="p2", job_kind="prediction", status=FAILED)) == {}


def test_resource_outputs_counts_batch_items_and_keeps_trainings():
    doc = StateDoc()
    doc.addresses["Training/t"] = AddressState("Training/t", "Training", "training", "local", "f", status="succeeded",
                                               outputs={"version": "v"})
    for k, status in (("a", "succeeded"), ("b", "succeeded"), ("c", "failed")):
        addr = f"PredictionBatch/b[{k}]"
        doc.addresses[addr] = AddressState(addr, "PredictionBatch", "prediction", "local", "f", status=status)
    out = resource_outputs(doc, {"PredictionBatch/b": "out.jsonl"})
    assert out == {"Training/t": {"version": "v"}, "PredictionBatch/b": {"count": 2, "output_file": "out.jsonl"}}
    assert batch_key("PredictionBatch/b[x-1]") == "x-1"


def test_output_rows_and_atomic_jsonl(tmp_path: Path):
    st = AddressState("PredictionBatch/b[a]", "PredictionBatch", "prediction", "local", "f", status="succeeded",
                      outputs={"output": "o", "metrics": {"m": 1}})
    rows = output_rows([("a", {"api_key": "(sensitive)"}, st), ("b", {}, None)])
    assert rows[0] == {"key": "a", "input": {"api_key": "(sensitive)"}, "status": "succeeded", "output": "o",
                       "metrics": {"m": 1}}
    assert rows[1]["status"] is None
    path = tmp_path / "out" / "r.jsonl"
    write_jsonl(path, rows)
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a", "b"]
    assert list(path.parent.iterdir()) == [path]


def test_statewriter_coalesces_concurrent_flushes():
    saves = []

    class Store:
        def save(self, doc):
            saves.append(doc.serial)
            doc.serial += 1

    writer = StateWriter(Store(), StateDoc())

    async def many():
        await asyncio.gather(*(writer.flush() for _ in range(50)))

    asyncio.run(many())
    assert 1 <= len(saves) <= 2


def test_line_progress_is_one_line_per_event_and_scrubs_tokens(monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_secretvalue123")
    buf = io.StringIO()
    p = LineProgress(buf)
    p.event("Training/t", "created", "id r8_secretvalue123")
    p.event("Training/t", "succeeded")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "Training/t: created" in lines[0]
    assert "r8_secretvalue123" not in buf.getvalue()


def test_live_progress_redraws_in_place():
    buf = io.StringIO()
    p = make_progress(buf, tty=True)
    p.event("A/a", "running", "x")
    p.event("A/a", "succeeded", "x")
    p.close()
    assert "\x1b[" in buf.getvalue() and "succeeded" in buf.getvalue()


def test_line_progress_folds_routine_events_of_large_batches():
    buf = io.StringIO()
    p = LineProgress(buf, item_lines=3, summary_every=3600)
    for i in range(10):
        p.event(f"PredictionBatch/b[{i}]", "created")
    p.event("PredictionBatch/b[7]", "failed", "boom")
    p.event("Training/t", "succeeded")
    p.close()
    lines = buf.getvalue().splitlines()
    assert sum("created" in x and "[" in x.split("]", 1)[1] for x in lines) <= 4
    assert any("PredictionBatch/b[7]: failed (boom)" in x for x in lines)
    assert any("Training/t: succeeded" in x for x in lines)
    assert "9 pending" in lines[-1] and "1 failed" in lines[-1]  # by status, as `status` shows them


def test_a_trainings_run_time_is_recorded_for_estimates():
    t = RemoteJob(id="t1", job_kind="training", status=SUCCEEDED, output={"version": f"me/p:{V}"},
                  metrics={"predict_time": 42.5, "total_time": 50})
    assert outputs_of("training", t) == {"id": "t1", "version": f"me/p:{V}", "metrics": {"predict_time": 42.5}}


def test_has_file_marker_finds_markers_at_any_depth_and_only_markers():
    from jobrunner.reconcile.requests import has_file_marker

    assert has_file_marker({"input": {"data": {"$file": "a.txt"}}})
    assert has_file_marker({"input": {"items": [1, {"x": [{"$file": "b.txt"}]}]}})
    assert has_file_marker([{"$file": "c.txt"}])
    assert not has_file_marker({"version": "v", "input": {"prompt": "$file", "seed": 1, "n": [1, 2]}})
    assert not has_file_marker({"input": {"$file": "a", "other": 1}})  # not a marker: two keys
    assert not has_file_marker({"input": {"$file": 3}})  # not a marker: no path
