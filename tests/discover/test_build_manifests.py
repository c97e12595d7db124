"""The pure half of `import --discover`: remote jobs -> manifest documents (and what is left out)."""
from __future__ import annotations

from datetime import UTC, datetime

import yaml

from jobrunner.discover import Candidate, build_manifests, dns_label, render_documents
from jobrunner.providers.base import RemoteJob

V = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(id: str, kind: str = "prediction", **kw) -> RemoteJob:
    kw.setdefault("status", "succeeded")
    kw.setdefault("created_at", T0)
    return RemoteJob(id=id, job_kind=kind, **kw)


def test_replicate_training_and_predictions_grouped_by_version():
    out = build_manifests([
        Candidate("replicate", job("TR1abc", "training", model="acme/llama", version=V,
                                   input={"epochs": 2}, extra={"destination": "acme/llama-ft"})),
        Candidate("replicate", job("p2", model="acme/llama-ft", version=f"acme/llama-ft:{V}", input={"prompt": "b"})),
        Candidate("replicate", job("p1", model="acme/llama-ft", version=V, input={"prompt": "a"})),
    ])
    training, batch = out.documents
    assert training["kind"] == "Training" and training["metadata"]["name"] == "llama-tr1abc"
    assert training["spec"] == {"provider": "replicate", "model": "acme/llama", "version": V,
                                "destination": "acme/llama-ft", "input": {"epochs": 2}}
    assert batch["spec"]["version"] == V
    assert batch["spec"]["inputs"] == [
        {"key": "p1", "prompt": "a"},
        {"key": "p2", "prompt": "b"},
    ]  # by creation, then id
    assert out.addresses == {"Training/llama-tr1abc": ("replicate", "TR1abc"),
                             "PredictionBatch/llama-ft-a3c8c00c[p1]": ("replicate", "p1"),
                             "PredictionBatch/llama-ft-a3c8c00c[p2]": ("replicate", "p2")}


def test_emissary_training_from_the_job_detail():
    detail = job("tj-9", "training", model="Llama-3.2-1B-Instruct", project_id="proj-1",
                 extra={"train_dataset": {"id": "ds-1", "name": "train"}, "test_dataset": {"id": "ds-2"},
                        "description": "by hand", "parameters": {"epochs": 3}})
    (doc,) = build_manifests([Candidate("emissary", detail)]).documents
    assert doc["spec"] == {"provider": "emissary", "project_id": "proj-1", "base_model": "Llama-3.2-1B-Instruct",
                           "train_dataset_id": "ds-1", "test_dataset_id": "ds-2", "description": "by hand",
                           "parameters": {"epochs": 3}}


def test_jobs_that_cannot_be_declared_are_skipped_with_a_reason():
    out = build_manifests([
        Candidate("replicate", job("official", model="meta/llama", version=None, input={"prompt": "x"})),
        Candidate("local", job("keyed", model="jobrunner/echo", version=V, input={"key": 1})),
        Candidate("local", job("running-tr", "training", status="running", model="jobrunner/ngram", version=V)),
        Candidate("emissary", job("tj-1", "training", model="m", project_id="p")),
    ])
    assert out.documents == []
    reasons = dict(out.skipped)
    assert "no model version" in reasons["official"]
    assert "`key`" in reasons["keyed"]
    assert "destination" in reasons["running-tr"]
    assert "training dataset" in reasons["tj-1"]


def test_names_are_dns_labels_and_never_collide_with_existing_resources():
    assert dns_label("Llama_3.2 FT!") == "llama-3-2-ft"
    assert dns_label("9lives") == "job-9lives"
    assert len(dns_label("x" * 100)) == 63
    out = build_manifests([Candidate("local", job("p1", model="jobrunner/echo", version=V, input={}))],
                          taken={"PredictionBatch/echo-a3c8c00c"})
    assert out.documents[0]["metadata"]["name"] == "echo-a3c8c00c-2"


def test_rendered_file_is_valid_multi_document_yaml_with_comments():
    out = build_manifests([Candidate("local", job("p1", model="jobrunner/echo", version=V, input={"text": "hi"}))])
    text = render_documents(out, since="30d", now=T0)
    assert text.startswith("# Written by `jobrunner import --discover --since 30d` on 2026-03-01 12:00 UTC")
    assert "# remote job p1 (succeeded, created 2026-03-01T12:00:00Z)" in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 1 and "_jobs" not in docs[0]
    assert docs[0]["spec"]["inputs"] == [{"key": "p1", "text": "hi"}]
