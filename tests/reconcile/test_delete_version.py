"""`lifecycle.on_remove: delete_version`: a removed Replicate training takes the version it made with it.

The plan shows a destructive `delete` for a training that succeeded and recorded its version, a
cancel for one still running (it has no version yet), a forget for one that failed; validation
refuses the word where there is no trained version to delete.
"""
from __future__ import annotations

import json
from pathlib import Path

from jobrunner.loader import load_text
from jobrunner.plan_types import CANCEL, DELETE, FORGET
from jobrunner.providers.base import FAILED, RUNNING
from jobrunner.render import plan_json, plan_text
from jobrunner.validate import validate_documents
from tests.core.plan_helpers import actions, apply_all, plan_for, reasons, training

ADDR = "Training/poems"
DELETING = {"on_remove": "delete_version"}


def _removed_plan(tmp_path: Path, status: str = "succeeded"):
    doc = apply_all([training(lifecycle=DELETING)], tmp_path, status=status)
    return plan_for([], tmp_path, doc)


def test_a_removed_training_that_succeeded_deletes_its_version(tmp_path: Path) -> None:
    plan = _removed_plan(tmp_path)
    assert actions(plan) == {ADDR: DELETE}
    assert reasons(plan)[ADDR] == (f"removed from the manifests; lifecycle.on_remove is delete_version: "
                                   f"its trained version me/poems:{'1' * 64} is deleted")
    text = plan_text.render(plan)
    assert f"  - {ADDR}" in text
    assert f"Destructive: This plan deletes 1 trained version on the provider: {ADDR}" in text
    (change,) = json.loads(plan_json.render(plan))["changes"]
    assert change["action"] == "delete" and change["destructive"] is True


def test_still_running_it_is_canceled_and_failed_it_is_forgotten(tmp_path: Path) -> None:
    assert actions(_removed_plan(tmp_path, status=RUNNING)) == {ADDR: CANCEL}
    assert actions(_removed_plan(tmp_path, status=FAILED)) == {ADDR: FORGET}


def test_without_the_lifecycle_a_removed_training_is_only_forgotten(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    assert actions(plan_for([], tmp_path, doc)) == {ADDR: FORGET}


HEAD = "apiVersion: jobrunner/v1\n"


def _errors(text: str, root: Path) -> list[str]:
    loaded = load_text(text, "m.yaml")
    return [d.format() for d in validate_documents(loaded.documents, root).diagnostics if d.severity == "error"]


def test_validation_refuses_delete_version_where_no_version_is_made(tmp_path: Path) -> None:
    emissary = HEAD + """kind: Training
metadata: {name: tune}
spec:
  provider: emissary
  project_id: ms-1
  base_model: jobrunner-ngram
  train_dataset_id: ds-1
  lifecycle: {on_remove: delete_version}
"""
    (error,) = _errors(emissary, tmp_path)
    assert error.startswith("m.yaml:9:15: Training/tune: $.spec.lifecycle.on_remove: ")
    assert "on_remove: delete_version deletes the version a Replicate training made; Training/tune (emissary) " \
           "makes none: use cancel (the default) or keep" in error
    replicate = HEAD + """kind: Training
metadata: {name: poems}
spec:
  provider: replicate
  model: jobrunner/ngram
  version: a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174
  destination: me/poems
  input: {order: 3}
  lifecycle: {on_remove: delete_version}
"""
    assert _errors(replicate, tmp_path) == []
