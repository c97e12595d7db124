"""Renderers of `status`, `outputs` and destroy's plan: pure functions of the state document."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jobrunner.errors import PlanError
from jobrunner.plan_types import CANCEL, FORGET
from jobrunner.reconcile.planning import destroy_changes
from jobrunner.render.outputs import outputs_json, outputs_text, recorded_outputs, status_rows, status_text
from jobrunner.resources import Resource
from jobrunner.state.model import AddressState, Attempt, StateDoc

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def _doc() -> StateDoc:
    doc = StateDoc()
    doc.addresses["Training/poems"] = AddressState(
        address="Training/poems", kind="Training", job_kind="training", provider="local", file="t.yaml",
        remote_id="r1", status="processing", attempts=1,
        outputs={"version": "me/poems:abc", "api_token": "s3cret"},
        history=[Attempt(remote_id="r1", fingerprint="f", attempt=1, created_at="2026-01-02T11:30:00Z",
                         status="processing")])
    doc.addresses["PredictionBatch/b[k1]"] = AddressState(
        address="PredictionBatch/b[k1]", kind="PredictionBatch", job_kind="prediction", provider="local",
        file="b.yaml", remote_id="p1", status="succeeded", attempts=1, outputs={"output": "line one\nline two"})
    return doc


def test_status_table_aligns_columns_and_counts_age_from_the_tracked_job() -> None:
    rows = status_rows(_doc(), NOW)
    assert [r["age_seconds"] for r in rows] == [None, 1800.0]
    lines = status_text(rows).splitlines()
    assert lines[0].split() == ["ADDRESS", "PROVIDER", "REMOTE", "ID", "STATUS", "AGE", "ATTEMPTS"]
    assert lines[2].split() == ["Training/poems", "local", "r1", "processing", "30m", "1"]
    assert lines[0].index("PROVIDER") == lines[1].index("local") == lines[2].index("local")
    assert status_text([]) == "No tracked jobs. Run `jobrunner apply` to create some."


def test_outputs_are_selected_by_resource_and_redacted() -> None:
    data = recorded_outputs(_doc(), ["Training/poems"])
    assert data == {"Training/poems": {"version": "me/poems:abc", "api_token": "(sensitive)"}}
    assert json.loads(outputs_json(data))["outputs"] == data
    everything = outputs_text(recorded_outputs(_doc()))
    assert 'PredictionBatch/b[k1].output = "line one\\nline two"' in everything.splitlines()
    assert "Training/poems.version = me/poems:abc" in everything.splitlines()
    assert outputs_text({}) == "No outputs recorded yet."


def test_destroy_cancels_running_jobs_and_refuses_protected_ones() -> None:
    doc = _doc()
    changes = {c.address: c for c in destroy_changes(doc.addresses, {})}
    assert changes["Training/poems"].action == CANCEL
    assert changes["PredictionBatch/b[k1]"].action == FORGET
    assert changes["Training/poems"].reason == "still running; forgotten once canceled"
    assert changes["PredictionBatch/b[k1]"].reason == "already succeeded"
    protected = Resource(kind="Training", name="poems", spec={"lifecycle": {"prevent_cancel": True}},
                         file="t.yaml", line=1)
    with pytest.raises(PlanError, match="Training/poems"):
        destroy_changes(doc.addresses, {"Training/poems": protected})
