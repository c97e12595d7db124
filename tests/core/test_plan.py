"""The plan engine: every action and its reason, DAG cases, scoped removal, targeting."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.errors import PlanError, UsageError
from jobrunner.plan import compute_plan, filter_plan
from jobrunner.plan_types import ADOPT, CANCEL, CREATE, FORGET, NOOP, REPLACE, RETRY, WAIT
from jobrunner.providers.base import CANCELED, GONE, RUNNING, UNKNOWN, RemoteJob
from jobrunner.spec import expand
from jobrunner.state.model import Intent, StateDoc
from tests.core.plan_helpers import FILE, actions, apply_all, batch, model, plan_for, reasons, record, training


def test_everything_new_is_created(tmp_path: Path) -> None:
    res = [model(), training(), batch()]
    plan = plan_for(res, tmp_path, StateDoc(lineage="L"))
    assert actions(plan) == {
        "Model/poems": CREATE, "Training/poems": CREATE,
        "PredictionBatch/eval[a]": CREATE, "PredictionBatch/eval[b]": CREATE,
    }
    r = reasons(plan)
    assert r["Training/poems"] == "new job" and r["PredictionBatch/eval[a]"] == "new batch item"
    assert "adopted instead if it already exists" in r["Model/poems"]
    # DAG order: the model (a destination) comes before the training that targets it
    order = [c.address for c in plan.changes]
    assert order.index("Model/poems") < order.index("Training/poems")
    assert plan.counts()[CREATE] == 4 and plan.has_changes
    assert plan.state_lineage == "L"


def test_succeeded_and_unchanged_is_converged(tmp_path: Path) -> None:
    res = [model(), training(), batch()]
    doc = apply_all(res, tmp_path)
    plan = plan_for(res, tmp_path, doc)
    assert set(actions(plan).values()) == {NOOP}
    assert all(c.quiet for c in plan.changes)
    assert not plan.has_changes


def test_settings_outside_the_fingerprint_never_rerun(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    edited = training(webhook="https://example.com/hook", webhook_events_filter=["completed"], timeout="2h",
                      retry={"max_attempts": 3}, lifecycle={"on_remove": "keep"}, sensitive=["x"])
    assert actions(plan_for([edited], tmp_path, doc)) == {"Training/poems": NOOP}


def test_changed_input_is_replaced_with_a_diff(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    plan = plan_for([training(input={"order": 5})], tmp_path, doc)
    (change,) = plan.changes
    assert change.action == REPLACE
    assert change.reason == "input.order (4 -> 5) changed"
    assert change.input_diff == {"input.order": [4, 5]}
    assert change.fingerprint_before != change.fingerprint_after


def test_replacing_a_running_job_cancels_it_first(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="running")
    plan = plan_for([training(input={"order": 5}, version="b" * 64)], tmp_path, doc)
    (change,) = plan.changes
    assert change.action == REPLACE
    assert "input.order, version changed" in change.reason
    assert "the running r-Training/poems is canceled first" in change.reason


def test_replacing_a_protected_running_job_says_it_is_left_running(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="running")
    protected = {"prevent_cancel": True}
    for forced in ([], ["Training/poems"]):
        edited = training(lifecycle=protected) if forced else training(input={"order": 5}, lifecycle=protected)
        (change,) = plan_for([edited], tmp_path, doc, replace=forced).changes
        assert change.action == REPLACE
        assert "the running r-Training/poems is left running (lifecycle.prevent_cancel)" in change.reason
        assert "canceled" not in change.reason


def test_on_change_keep_leaves_a_succeeded_run(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    plan = plan_for([training(input={"order": 5}, lifecycle={"on_change": "keep"})], tmp_path, doc)
    (change,) = plan.changes
    assert change.action == NOOP and "lifecycle.on_change is keep" in change.reason and not change.quiet


def test_forced_replace(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    plan = plan_for([training()], tmp_path, doc, replace=["Training/poems"])
    assert actions(plan) == {"Training/poems": REPLACE}
    assert reasons(plan)["Training/poems"] == "replace requested"


def test_running_unchanged_waits(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="running")
    plan = plan_for([training()], tmp_path, doc)
    assert actions(plan) == {"Training/poems": WAIT}
    assert reasons(plan)["Training/poems"] == "running (r-Training/poems)"
    assert not plan.has_changes


def test_unknown_remote_status_waits_and_says_so(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="running")
    seen = RemoteJob(id="r-Training/poems", job_kind="training", status=UNKNOWN, raw_status="queued_v2")
    plan = plan_for([training()], tmp_path, doc, remote={"Training/poems": seen})
    assert actions(plan) == {"Training/poems": WAIT} and "'queued_v2'" in reasons(plan)["Training/poems"]


def test_failed_is_retried_while_attempts_remain(tmp_path: Path) -> None:
    res = [training(retry={"max_attempts": 3})]
    doc = apply_all(res, tmp_path, status="failed", error="CUDA out of memory")
    plan = plan_for(res, tmp_path, doc)
    assert actions(plan) == {"Training/poems": RETRY}
    assert reasons(plan)["Training/poems"] == "r-Training/poems failed: CUDA out of memory; attempt 2 of 3"
    doc.addresses["Training/poems"].attempts = 3
    plan = plan_for(res, tmp_path, doc)
    assert actions(plan) == {"Training/poems": NOOP}
    reason = reasons(plan)["Training/poems"]
    assert "no attempts left (3 attempts of retry.max_attempts=3)" in reason
    assert "raise spec.retry.max_attempts" in reason


def test_default_is_one_attempt_no_retry(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="failed")
    plan = plan_for([training()], tmp_path, doc)
    assert actions(plan) == {"Training/poems": NOOP}
    assert "no attempts left (1 attempt of retry.max_attempts=1)" in reasons(plan)["Training/poems"]


def test_drift_canceled_or_deleted_outside_is_shown(tmp_path: Path) -> None:
    res = [training(retry={"max_attempts": 2})]
    doc = apply_all(res, tmp_path, status="running")
    canceled = RemoteJob(id="r-Training/poems", job_kind="training", status=CANCELED)
    plan = plan_for(res, tmp_path, doc, remote={"Training/poems": canceled})
    (change,) = plan.changes
    assert change.action == RETRY and change.remote_status == CANCELED
    assert change.reason == "r-Training/poems was canceled outside jobrunner; attempt 2 of 2"
    gone = RemoteJob(id="r-Training/poems", job_kind="training", status=GONE)
    plan = plan_for([training()], tmp_path, doc, remote={"Training/poems": gone})
    (change,) = plan.changes
    assert change.action == NOOP and "deleted outside jobrunner" in change.reason


def test_removed_running_is_cancelled_and_terminal_forgotten(tmp_path: Path) -> None:
    doc = apply_all([training(), batch()], tmp_path)
    doc.addresses["Training/poems"].status = "running"
    plan = plan_for([], tmp_path, doc, planned_files={FILE})
    assert actions(plan) == {
        "Training/poems": CANCEL, "PredictionBatch/eval[a]": FORGET, "PredictionBatch/eval[b]": FORGET,
    }
    assert reasons(plan)["Training/poems"] == "removed from the manifests; r-Training/poems is still running"
    assert reasons(plan)["PredictionBatch/eval[a]"] == "removed from the manifests (last run succeeded)"


def test_removed_batch_row_is_forgotten_alone(tmp_path: Path) -> None:
    doc = apply_all([batch()], tmp_path)
    plan = plan_for([batch(inputs=[{"key": "a", "prompt": "A"}])], tmp_path, doc)
    assert actions(plan) == {"PredictionBatch/eval[a]": NOOP, "PredictionBatch/eval[b]": FORGET}


def test_addresses_from_files_not_planned_are_left_alone(tmp_path: Path) -> None:
    doc = apply_all([training(file="specs/a.yaml"), batch(file="specs/b.yaml")], tmp_path)
    # planning only specs/a.yaml: the batch (from b.yaml) is not in the plan at all
    plan = plan_for([training(file="specs/a.yaml")], tmp_path, doc, planned_files={"specs/a.yaml"})
    assert actions(plan) == {"Training/poems": NOOP}
    # a.yaml planned but no longer defining the training: it counts as removed
    plan = plan_for([], tmp_path, doc, planned_files={"specs/a.yaml"})
    assert actions(plan) == {"Training/poems": FORGET}


def test_on_remove_keep_forgets_a_running_job(tmp_path: Path) -> None:
    res = training(lifecycle={"on_remove": "keep"})
    doc = apply_all([res], tmp_path, status="running")
    plan = plan_for([], tmp_path, doc, planned_files={FILE})
    assert actions(plan) == {"Training/poems": FORGET}
    assert "lifecycle.on_remove is keep" in reasons(plan)["Training/poems"]


def test_prevent_cancel_survives_the_manifest_removal(tmp_path: Path) -> None:
    res = training(lifecycle={"prevent_cancel": True})
    doc = apply_all([res], tmp_path, status="running")
    with pytest.raises(PlanError) as info:
        plan_for([], tmp_path, doc, planned_files={FILE})
    assert "Training/poems" in str(info.value) and "prevent_cancel" in str(info.value)
    # terminal: nothing to cancel, forgetting is fine
    doc.addresses["Training/poems"].status = "succeeded"
    assert actions(plan_for([], tmp_path, doc, planned_files={FILE})) == {"Training/poems": FORGET}


def test_prevent_cancel_of_a_removed_batch_row_comes_from_the_manifest(tmp_path: Path) -> None:
    res = batch(lifecycle={"prevent_cancel": True})
    doc = apply_all([res], tmp_path, status="running")
    doc.addresses["PredictionBatch/eval[b]"].lifecycle = None  # even when state did not record it
    with pytest.raises(PlanError, match=r"PredictionBatch/eval\[b\]"):
        plan_for([batch(inputs=[{"key": "a", "prompt": "A"}], lifecycle={"prevent_cancel": True})],
                 tmp_path, doc)


def test_pending_intent_found_on_provider_is_adopted(tmp_path: Path) -> None:
    res = [training()]
    (job,) = expand(res, tmp_path)
    doc = StateDoc(lineage="L")
    st = record(doc, job, res[0], status="pending")
    st.remote_id, st.history = None, []
    st.intent = Intent(fingerprint=job.fingerprint or "", attempt=1, created_at="2026-01-01T00:00:00+00:00",
                       request_digest="d")
    found = RemoteJob(id="tr-found", job_kind="training", status=RUNNING)
    plan = plan_for(res, tmp_path, doc, remote={"Training/poems": found})
    (change,) = plan.changes
    assert change.action == ADOPT and change.adopt_remote_id == "tr-found"
    assert "adopting tr-found (running)" in change.reason
    # not found: created again (the reconciler looks it up once more first)
    plan = plan_for(res, tmp_path, doc)
    assert actions(plan) == {"Training/poems": CREATE}
    assert reasons(plan)["Training/poems"] == "an interrupted create was not found on the provider"


def test_models_are_created_once_and_kept(tmp_path: Path) -> None:
    doc = apply_all([model()], tmp_path)
    plan = plan_for([model(visibility="public")], tmp_path, doc)
    (change,) = plan.changes
    assert change.action == NOOP and not change.quiet
    assert "visibility" in change.reason and "never updates existing models" in change.reason
    plan = plan_for([], tmp_path, doc, planned_files={FILE})
    assert actions(plan) == {"Model/poems": FORGET}
    assert "models are kept" in reasons(plan)["Model/poems"]


def test_reference_known_after_apply_then_converges(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}")]
    plan = plan_for(res, tmp_path, StateDoc(lineage="L"))
    item = next(c for c in plan.changes if c.address == "PredictionBatch/eval[a]")
    assert item.action == CREATE and item.fingerprint_after is None
    assert "known after apply (waits for Training/poems)" in item.reason
    assert [c.address for c in plan.changes][0] == "Training/poems"

    doc = apply_all(res, tmp_path)  # training succeeds with version me/poems:111..., then the batch runs
    assert doc.addresses["PredictionBatch/eval[a]"].fingerprint is not None
    plan = plan_for(res, tmp_path, doc)
    assert set(actions(plan).values()) == {NOOP}

    # the training changes: its dependents' version is known after apply again
    changed = [training(input={"order": 5}), batch(version="${Training.poems.output.version}")]
    plan = plan_for(changed, tmp_path, doc)
    assert actions(plan) == {"Training/poems": REPLACE, "PredictionBatch/eval[a]": REPLACE,
                             "PredictionBatch/eval[b]": REPLACE}
    item = next(c for c in plan.changes if c.address == "PredictionBatch/eval[a]")
    assert item.fingerprint_after is None and "known after apply" in item.reason


def test_upstream_failed_for_good_skips_dependents(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}")]
    doc = StateDoc(lineage="L")
    (train_job,) = [j for j in expand(res, tmp_path) if j.address == "Training/poems"]
    record(doc, train_job, res[0], status="failed", error="boom")
    plan = plan_for(res, tmp_path, doc)
    item = next(c for c in plan.changes if c.address == "PredictionBatch/eval[a]")
    assert item.action == CREATE and item.blocked_by == ("Training/poems",)
    assert "will be skipped: Training/poems ended failed" in item.reason


def test_filter_plan_keeps_targets_and_their_dependencies(tmp_path: Path) -> None:
    res = [model(), training(), batch(version="${Training.poems.output.version}"), batch(name="other")]
    plan = plan_for(res, tmp_path, StateDoc(lineage="L"))
    only = filter_plan(plan, ["PredictionBatch/eval"])
    assert sorted(actions(only)) == ["Model/poems", "PredictionBatch/eval[a]", "PredictionBatch/eval[b]",
                                     "Training/poems"]
    assert sorted(actions(filter_plan(plan, ["PredictionBatch/other[a]"]))) == ["PredictionBatch/other[a]"]
    with pytest.raises(UsageError, match="Training/nope"):
        filter_plan(plan, ["Training/nope"])


def test_plan_is_pure_and_deterministic(tmp_path: Path) -> None:
    res = [model(), training(), batch(inputs=[{"prompt": str(i)} for i in range(20)])]
    doc = StateDoc(lineage="L")
    desired = expand(res, tmp_path)
    one = compute_plan(desired, doc, {}, planned_files={FILE}, resources=res)
    two = compute_plan(list(reversed(desired)), doc, {}, planned_files={FILE}, resources=res)
    assert [(c.address, c.action, c.reason) for c in one.changes] == [
        (c.address, c.action, c.reason) for c in two.changes]
    assert doc.addresses == {}  # state untouched


def _with_intent(doc: StateDoc, address: str, fingerprint: str) -> None:
    st = doc.addresses[address]
    st.intent = Intent(fingerprint=fingerprint, attempt=st.attempts + 1, created_at="2026-01-02T00:00:00+00:00",
                       request_digest="d")


def test_interrupted_create_for_an_older_spec_is_recorded_then_replaced(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="failed")
    _with_intent(doc, "Training/poems", "0" * 64)  # a create for a spec that has since changed
    found = RemoteJob(id="tr-old", job_kind="training", status=RUNNING)
    plan = plan_for([training()], tmp_path, doc, remote={"Training/poems": found})
    (change,) = plan.changes
    assert change.action == REPLACE and change.adopt_remote_id == "tr-old"
    assert "older spec reached the provider (tr-old)" in change.reason


def test_removed_address_with_a_found_interrupted_create_cancels_that_job(tmp_path: Path) -> None:
    (job,) = expand([training()], tmp_path)
    doc = apply_all([training()], tmp_path, status="failed")
    _with_intent(doc, "Training/poems", job.fingerprint or "")
    found = RemoteJob(id="tr-new", job_kind="training", status=RUNNING)
    plan = plan_for([], tmp_path, doc, remote={"Training/poems": found}, planned_files={FILE})
    (change,) = plan.changes
    assert change.action == CANCEL and change.adopt_remote_id == "tr-new"
    assert change.reason == "removed from the manifests; tr-new is still running"
