"""Spec expansion: addresses, requests, and what does and does not enter a fingerprint."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.errors import ManifestError
from jobrunner.resources import JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, Resource
from jobrunner.spec import expand, recorded_inputs, upstream_outputs
from jobrunner.state.model import StateDoc
from tests.core.plan_helpers import ECHO, NGRAM, apply_all, batch, model, training


def _one(res: Resource, root: Path, outputs: dict | None = None):
    (job,) = expand([res], root, outputs or {})
    return job


def test_training_request_and_fingerprint(tmp_path: Path) -> None:
    data = tmp_path / "specs" / "data"
    data.mkdir(parents=True)
    (data / "poems.txt").write_text("roses are red\n")
    res = training(input={"train_data": {"$file": "data/poems.txt"}, "order": 5}, webhook="https://h.example/x")
    job = _one(res, tmp_path)
    assert job.address == "Training/poems" and job.job_kind == JOB_TRAINING and job.file == "specs/jobs.yaml"
    assert job.request == {
        "provider": "local", "kind": "training", "model": "jobrunner/ngram", "version": NGRAM,
        "destination": "me/poems", "input": {"train_data": {"$file": "specs/data/poems.txt"}, "order": 5},
        "webhook": "https://h.example/x",
    }
    assert "webhook" not in job.material and "$file_sha256" in job.material["input"]["train_data"]
    first = job.fingerprint
    assert first is not None and len(first) == 64

    # moving the file (same bytes) keeps the fingerprint; editing it changes it
    (tmp_path / "specs" / "moved.txt").write_text("roses are red\n")
    moved = training(input={"train_data": {"$file": "moved.txt"}, "order": 5})
    assert _one(moved, tmp_path).fingerprint == first
    (data / "poems.txt").write_text("violets are blue\n")
    assert _one(res, tmp_path).fingerprint != first


def test_fields_that_never_enter_the_fingerprint(tmp_path: Path) -> None:
    base = _one(training(), tmp_path).fingerprint
    for extra in ({"webhook": "https://x"}, {"webhook_events_filter": ["start"]}, {"timeout": "1h"},
                  {"retry": {"max_attempts": 3}}, {"lifecycle": {"on_change": "keep"}}, {"sensitive": ["a"]}):
        assert _one(training(**extra), tmp_path).fingerprint == base, extra
    labelled = Resource("Training", "poems", training().spec, "other/file.yaml", 9, labels={"team": "nlp"})
    assert _one(labelled, tmp_path).fingerprint == base
    # what determines the result does
    assert _one(training(version="b" * 64), tmp_path).fingerprint != base
    assert _one(training(destination="me/other"), tmp_path).fingerprint != base
    assert _one(training(provider="replicate"), tmp_path).fingerprint != base


def test_owner_name_colon_version_is_split(tmp_path: Path) -> None:
    a = _one(training(version=f"jobrunner/ngram:{NGRAM}"), tmp_path)
    b = _one(training(), tmp_path)
    assert a.request["model"] == "jobrunner/ngram" and a.request["version"] == NGRAM
    assert a.fingerprint == b.fingerprint


def test_batch_items_have_their_own_addresses(tmp_path: Path) -> None:
    res = batch(input_defaults={"seed": 1}, inputs=[{"key": "moon", "prompt": "The moon"}, {"prompt": "At dawn"}])
    jobs = expand([res], tmp_path, {})
    assert [j.address for j in jobs][0] == "PredictionBatch/eval[moon]"
    assert (
        jobs[1].address.startswith("PredictionBatch/eval[")
        and len(jobs[1].address) == len("PredictionBatch/eval[]") + 12
    )
    assert all(j.job_kind == JOB_PREDICTION and j.resource_address == "PredictionBatch/eval" for j in jobs)
    assert jobs[0].request["input"] == {"seed": 1, "prompt": "The moon"}
    assert jobs[0].request["model"] == "jobrunner/echo" and jobs[0].request["version"] == ECHO
    # editing one row only changes that row's fingerprint
    edited = batch(input_defaults={"seed": 1}, inputs=[{"key": "moon", "prompt": "The sun"}, {"prompt": "At dawn"}])
    again = expand([edited], tmp_path, {})
    assert again[0].fingerprint != jobs[0].fingerprint and again[1].fingerprint == jobs[1].fingerprint


def test_emissary_body_fields(tmp_path: Path) -> None:
    spec = {"provider": "emissary", "project_id": "proj-1", "base_model": "jobrunner-ngram",
            "train_dataset_id": "ds-1", "train_test_split_ratio": 0.2, "parameters": {"epochs": 3},
            "description": "first try"}
    job = _one(Resource("Training", "ft", spec, "specs/ft.yaml", 1), tmp_path)
    assert job.request["project_id"] == "proj-1"
    assert job.request["body"] == {"base_model": "jobrunner-ngram", "train_dataset_id": "ds-1",
                                   "train_test_split_ratio": 0.2, "parameters": {"epochs": 3},
                                   "description": "first try"}
    relabelled = _one(Resource("Training", "ft", {**spec, "description": "renamed"}, "specs/ft.yaml", 1), tmp_path)
    assert relabelled.fingerprint == job.fingerprint
    more = _one(Resource("Training", "ft", {**spec, "parameters": {"epochs": 4}}, "specs/ft.yaml", 1), tmp_path)
    assert more.fingerprint != job.fingerprint


def test_model_unit_and_destination_dependency(tmp_path: Path) -> None:
    jobs = expand([training(), model()], tmp_path, {})
    assert [j.address for j in jobs] == ["Model/poems", "Training/poems"]
    assert jobs[0].job_kind == JOB_MODEL and jobs[0].request["owner"] == "me"
    assert jobs[1].depends_on == ("Model/poems",)


def test_references_unknown_then_resolved(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}")]
    jobs = expand(res, tmp_path, {})
    item = jobs[1]
    assert item.fingerprint is None and item.depends_on == ("Training/poems",)
    assert item.request["version"] == "${Training.poems.output.version}"
    jobs = expand(res, tmp_path, {"Training/poems": {"version": f"me/poems:{'1' * 64}"}})
    item = jobs[1]
    assert item.fingerprint is not None
    assert item.request["model"] == "me/poems" and item.request["version"] == "1" * 64


def test_state_outputs_of_an_upstream_about_to_change_are_not_used(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}")]
    doc = apply_all(res, tmp_path)
    assert "Training/poems" in upstream_outputs(doc)
    assert all(j.fingerprint for j in expand(res, tmp_path, state=doc))
    changed = [training(input={"order": 9}), res[1]]
    items = [j for j in expand(changed, tmp_path, state=doc) if j.job_kind == JOB_PREDICTION]
    assert items and all(j.fingerprint is None for j in items)
    kept = [training(input={"order": 9}, lifecycle={"on_change": "keep"}), res[1]]
    items = [j for j in expand(kept, tmp_path, state=doc) if j.job_kind == JOB_PREDICTION]
    assert items and all(j.fingerprint for j in items)


def test_recorded_inputs_are_redacted(tmp_path: Path) -> None:
    job = _one(training(input={"order": 4, "hf_token": "hf_secret_value", "customer": "acme"},
                        sensitive=["customer"]), tmp_path)
    rec = recorded_inputs(job)
    assert rec["input"] == {"order": 4, "hf_token": "(sensitive)", "customer": "(sensitive)"}
    assert job.request["input"]["hf_token"] == "hf_secret_value"  # the request itself is sent as written


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        expand([training(input={"train_data": {"$file": "nope.txt"}})], tmp_path, {})
    (diag,) = info.value.diagnostics
    assert "nope.txt" in diag.message and diag.address == "Training/poems" and diag.file == "specs/jobs.yaml"


def test_empty_state_gives_no_outputs() -> None:
    assert upstream_outputs(StateDoc()) == {}


def test_missing_file_in_a_batch_row_points_at_the_row(tmp_path: Path) -> None:
    res = batch(inputs=[{"key": "a", "image": {"$file": "img/a.png"}}])
    with pytest.raises(ManifestError) as info:
        expand([res], tmp_path, {})
    (diag,) = info.value.diagnostics
    assert "img/a.png" in diag.message and diag.json_path == "$.spec.inputs.image"
    (tmp_path / "specs" / "img").mkdir(parents=True)
    (tmp_path / "specs" / "img" / "a.png").write_bytes(b"\x89PNG")
    (job,) = expand([res], tmp_path, {})
    assert job.request["input"]["image"] == {"$file": "specs/img/a.png"}
    assert set(job.material["input"]["image"]) == {"$file_sha256"}


def test_batch_rows_read_by_validation_are_reused_not_read_again(tmp_path: Path) -> None:
    from jobrunner.validate import validate_paths

    (tmp_path / "jobs.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: big}\nspec:\n"
        f"  provider: local\n  version: {ECHO}\n  input_defaults: {{max_tokens: 8}}\n  inputs_file: rows.jsonl\n")
    (tmp_path / "rows.jsonl").write_text('{"key": "a", "prompt": "one"}\n{"prompt": "two"}\n')
    result = validate_paths([tmp_path], tmp_path)
    assert result.ok and set(result.items) == {"PredictionBatch/big"}
    read_again = expand(result.resources, tmp_path)
    (tmp_path / "rows.jsonl").unlink()  # only the rows validation read can be used now
    reused = expand(result.resources, tmp_path, items=result.items)
    assert [(j.address, j.fingerprint, j.request) for j in reused] == \
        [(j.address, j.fingerprint, j.request) for j in read_again]
    assert reused[0].request["input"] == {"prompt": "one", "max_tokens": 8}
    with pytest.raises(ManifestError, match="rows.jsonl"):
        expand(result.resources, tmp_path)  # without them, the rows are read (and now missing)


def test_batch_outputs_resolve_once_every_item_succeeded(tmp_path: Path) -> None:
    up = batch(name="up", output_file="../out/up.jsonl")
    down = batch(name="down", inputs=[{"key": "n", "n": "${PredictionBatch.up.output.count}",
                                       "f": "${PredictionBatch.up.output.output_file}"}])
    doc = apply_all([up], tmp_path)
    (job,) = [j for j in expand([up, down], tmp_path, state=doc) if j.resource_address == "PredictionBatch/down"]
    assert job.depends_on == ("PredictionBatch/up",)  # a reference in a row makes the batch wait too
    assert job.request["input"] == {"n": 2, "f": "out/up.jsonl"}  # workspace-relative (FILE is specs/…)
    doc.addresses["PredictionBatch/up[b]"].status = "failed"
    (job,) = [j for j in expand([up, down], tmp_path, state=doc) if j.resource_address == "PredictionBatch/down"]
    assert job.fingerprint is None and job.missing_outputs == ()  # not settled: not known yet, nothing missing


def test_an_output_missing_from_a_settled_upstream_is_named(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}",
                             inputs=[{"key": "w", "w": "${Training.poems.output.weights}"}])]
    doc = apply_all(res[:1], tmp_path)  # recorded outputs: version only
    item = [j for j in expand(res, tmp_path, state=doc) if j.job_kind == JOB_PREDICTION][0]
    assert item.fingerprint is None and item.missing_outputs == (("Training/poems", "weights"),)
    doc.addresses["Training/poems"].outputs = {}
    item = [j for j in expand(res, tmp_path, state=doc) if j.job_kind == JOB_PREDICTION][0]
    assert item.missing_outputs == (("Training/poems", "version"), ("Training/poems", "weights"))


def test_batch_rows_with_and_without_files(tmp_path: Path) -> None:
    """A row of plain values is used as it is; a row naming a file, at any depth or as the whole
    row, gets the workspace-relative path in its request and the file's digest in its material."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.txt").write_text("A")
    rows: list[dict] = [{"key": "plain", "prompt": "x", "n": 1}, {"key": "deep", "img": {"$file": "a.txt"}},
            {"key": "listed", "imgs": [{"$file": "a.txt"}, "y"]}]
    plain, deep, listed = expand([batch(inputs=rows)], tmp_path, {})
    assert plain.request["input"] is plain.material["input"] == {"prompt": "x", "n": 1}
    assert deep.request["input"] == {"img": {"$file": "specs/a.txt"}}
    assert "$file_sha256" in deep.material["input"]["img"]
    assert listed.request["input"]["imgs"] == [{"$file": "specs/a.txt"}, "y"]
    whole = expand([batch(inputs=[{"$file": "a.txt"}])], tmp_path, {})[0]
    assert whole.request["input"] == {"$file": "specs/a.txt"} and "$file_sha256" in whole.material["input"]
