"""Ways out of a plan: declared renames (`moved:`), and `--replace` of a converged job (pure, no mocks)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobrunner.errors import PlanError, StalePlanError, UsageError
from jobrunner.loader import load_text
from jobrunner.moves import Move, apply_moves, check_moves, moves_from_config, resolve_moves
from jobrunner.plan import expand_replace, filter_plan
from jobrunner.plan_types import CANCEL, CREATE, FORGET, MOVED, NOOP, REPLACE
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.saved_plan import check_saved_plan, saved_plan_document
from jobrunner.spec import expand
from jobrunner.state.model import StateDoc
from tests.core.plan_helpers import FILE, actions, apply_all, batch, model, plan_for, reasons, record, training

ROWS = [{"key": "a", "prompt": "A"}, {"key": "b", "prompt": "B"}]


def running_batch(tmp_path: Path, name: str = "old", rows: list[dict] | None = None) -> StateDoc:
    return apply_all([batch(name, inputs=rows or ROWS)], tmp_path, status="running")


def moved(doc: StateDoc, moves: list[Move], resources: list, planned: set[str] | None = None) -> dict[str, str]:
    """What planning does: resolve the moves against state, re-key it; {new: old}."""
    defined = {r.address: r.file for r in resources}
    pairs = resolve_moves(moves, doc, defined, planned if planned is not None else {FILE})
    apply_moves(doc, pairs, defined)
    return {new: old for old, new in pairs.items()}


def mv(source: str, target: str, line: int = 3, index: int = 0) -> Move:
    return Move(source, target, "jobrunner.yaml", line, 5, index)


# --- the plan ---------------------------------------------------------------------------------------


def test_renamed_running_batch_is_moved_never_canceled_and_created(tmp_path: Path) -> None:
    doc = running_batch(tmp_path)
    ids = {a: st.remote_id for a, st in doc.addresses.items()}
    new = [batch("new", inputs=ROWS)]
    without = plan_for(new, tmp_path, StateDoc(lineage="L", addresses=dict(doc.addresses)))
    assert sorted(actions(without).values()) == [CANCEL, CANCEL, CREATE, CREATE]  # what a rename did before

    plan = plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))
    assert actions(plan) == {"PredictionBatch/new[a]": MOVED, "PredictionBatch/new[b]": MOVED}
    change = plan.changes[0]
    assert change.moved_from == "PredictionBatch/old[a]"
    assert change.reason == "moved from PredictionBatch/old[a]; still running (r-PredictionBatch/old[a])"
    assert change.prior is not None and change.prior.remote_id == ids["PredictionBatch/old[a]"]
    assert plan.moves == [("PredictionBatch/old[a]", "PredictionBatch/new[a]"),
                          ("PredictionBatch/old[b]", "PredictionBatch/new[b]")]
    assert plan.has_changes and plan.counts()[CANCEL] == plan.counts()[CREATE] == 0
    # state now holds the whole record at the new address, defined by the new resource's file
    assert set(doc.addresses) == {"PredictionBatch/new[a]", "PredictionBatch/new[b]"}
    assert doc.addresses["PredictionBatch/new[a]"].address == "PredictionBatch/new[a]"


def test_a_moved_job_whose_request_changed_is_moved_and_replaced(tmp_path: Path) -> None:
    doc = apply_all([batch("old", inputs=ROWS)], tmp_path)
    new = [batch("new", inputs=[{"key": "a", "prompt": "A!"}, {"key": "b", "prompt": "B"}])]
    plan = plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))
    assert actions(plan) == {"PredictionBatch/new[a]": REPLACE, "PredictionBatch/new[b]": MOVED}
    a = plan.changes[0]
    assert a.moved_from == "PredictionBatch/old[a]"
    assert a.reason.startswith("moved from PredictionBatch/old[a], and replaced: input.prompt")
    assert reasons(plan)["PredictionBatch/new[b]"] == "moved from PredictionBatch/old[b]"
    assert len(plan.moves) == 2


def test_keys_added_to_rows_are_moved_item_by_item(tmp_path: Path) -> None:
    unkeyed = [{"prompt": "A"}, {"prompt": "B"}]
    doc = running_batch(tmp_path, "eval", unkeyed)
    hashed = sorted(doc.addresses)
    keyed = [batch("eval", inputs=[{"key": "a", "prompt": "A"}, {"key": "b", "prompt": "B"}])]
    old_a = next(a for a in hashed if doc.addresses[a].inputs["input"]["prompt"] == "A")
    old_b = next(a for a in hashed if a != old_a)
    moves = [mv(old_a, "PredictionBatch/eval[a]"), mv(old_b, "PredictionBatch/eval[b]", index=1)]
    plan = plan_for(keyed, tmp_path, doc, moved=moved(doc, moves, keyed))
    assert actions(plan) == {"PredictionBatch/eval[a]": MOVED, "PredictionBatch/eval[b]": MOVED}


def test_an_item_the_new_batch_dropped_follows_the_removal_rules_at_its_new_address(tmp_path: Path) -> None:
    doc = running_batch(tmp_path)
    new = [batch("new", inputs=ROWS[:1])]
    plan = plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))
    assert actions(plan) == {"PredictionBatch/new[a]": MOVED, "PredictionBatch/new[b]": CANCEL}
    assert plan.changes[1].moved_from == "PredictionBatch/old[b]"
    assert "removed from the manifests" in plan.changes[1].reason


def test_a_moved_training_keeps_its_dependents_converged(tmp_path: Path) -> None:
    up = training("poems")
    down = batch("eval", version="${Training.poems.output.version}")
    doc = apply_all([up, down], tmp_path)
    renamed = [training("poems-v2"), batch("eval", version="${Training.poems-v2.output.version}")]
    moves = moved(doc, [mv("Training/poems", "Training/poems-v2")], renamed)
    plan = plan_for(renamed, tmp_path, doc, moved=moves)
    assert actions(plan) == {"Training/poems-v2": MOVED, "PredictionBatch/eval[a]": NOOP,
                             "PredictionBatch/eval[b]": NOOP}


def test_resolving_moves_against_state(tmp_path: Path) -> None:
    doc = running_batch(tmp_path)
    new = {"PredictionBatch/new": FILE}
    assert resolve_moves([mv("PredictionBatch/gone", "PredictionBatch/new")], doc, new, {FILE}) == {}
    # a move onto an address state already holds: two jobs cannot share it
    both = apply_all([batch("new", inputs=ROWS)], tmp_path, doc=doc)
    with pytest.raises(PlanError, match=r"jobrunner.yaml:3: moved PredictionBatch/old -> PredictionBatch/new: "
                                        r"state already holds PredictionBatch/new\[a\]"):
        resolve_moves([mv("PredictionBatch/old", "PredictionBatch/new")], both, new, {FILE})
    # `to` not among the manifests read: an error when the old record's file was planned...
    doc = running_batch(tmp_path)
    with pytest.raises(PlanError, match="PredictionBatch/new is not defined in the manifests this plan read"):
        resolve_moves([mv("PredictionBatch/old", "PredictionBatch/new")], doc, {}, {FILE})
    # ... and left for a later plan when it was not
    assert resolve_moves([mv("PredictionBatch/old", "PredictionBatch/new")], doc, {}, {"other.yaml"}) == {}


# --- checking the moved list --------------------------------------------------------------------------


def _messages(diags: list) -> list[str]:
    return [f"{d.file}:{d.line}: {d.json_path}: {d.message}" for d in diags]


def test_the_moved_list_is_read_with_positions() -> None:
    text = ("providers: {}\nmoved:\n  - {from: PredictionBatch/old, to: PredictionBatch/new}\n"
            "  - {from: PredictionBatch/x}\n  - just-a-string\n")
    doc = load_text(text, "jobrunner.yaml").documents[0]
    moves, diags = moves_from_config(doc.data, doc.positions)
    assert moves == [Move("PredictionBatch/old", "PredictionBatch/new", "jobrunner.yaml", 3, 5, 0)]
    assert [(d.line, d.json_path) for d in diags] == [(4, "$.moved[1]"), (5, "$.moved[2]")]
    assert "exactly `from` and `to`" in diags[0].message
    _, bad = moves_from_config({"moved": {"from": "a"}}, doc.positions)
    assert bad[0].line == 2 and "must be a list" in bad[0].message


def test_bad_moves_are_reported_at_their_line() -> None:
    moves = [
        mv("Deployment/x", "Deployment/y", line=3),
        mv("Model/m", "Model/n", line=4),
        mv("Training/t[k]", "Training/u[k]", line=5),
        mv("Training/t", "PredictionBatch/t", line=6),
        mv("PredictionBatch/p", "PredictionBatch/q[k]", line=7),
        mv("PredictionBatch/same", "PredictionBatch/same", line=8),
        mv("not an address", "PredictionBatch/q", line=9),
    ]
    out = _messages(check_moves(moves))
    assert len(out) == 7
    assert out[0] == ("jobrunner.yaml:3: $.moved[0]: unknown kind 'Deployment' in Deployment/x; moved entries name "
                      "Training or PredictionBatch addresses")
    assert "Model addresses are not moved" in out[1]
    assert "only PredictionBatch addresses have [key] items" in out[2]
    assert "cannot move a Training to a PredictionBatch" in out[3]
    assert "a whole batch moves to a whole batch and an item to an item" in out[4]
    assert "onto itself" in out[5]
    assert "is not an address" in out[6]


def test_chains_cycles_and_two_moves_onto_one_address_are_errors() -> None:
    chain = _messages(check_moves([mv("Training/a", "Training/b", 3, 0), mv("Training/b", "Training/c", 4, 1)]))
    assert chain == ["jobrunner.yaml:3: $.moved[0]: chain: Training/a -> Training/b -> Training/c (line 4); write "
                     "one entry per old address straight to its final address"]
    cycle = _messages(check_moves([mv("Training/a", "Training/b", 3, 0), mv("Training/b", "Training/a", 4, 1)]))
    assert len(cycle) == 2 and all("cycle: " in m for m in cycle)
    onto = _messages(check_moves([mv("PredictionBatch/a", "PredictionBatch/c", 3, 0),
                                  mv("PredictionBatch/b[k]", "PredictionBatch/c[k]", 4, 1)]))
    assert onto == ["jobrunner.yaml:4: $.moved[1]: PredictionBatch/b[k] and PredictionBatch/a would both move onto "
                    "PredictionBatch/c[k] (line 3); an address holds one job"]
    twice = _messages(check_moves([mv("Training/a", "Training/b", 3, 0), mv("Training/a", "Training/c", 4, 1)]))
    assert twice == ["jobrunner.yaml:4: $.moved[1]: Training/a is already moved by the entry at line 3"]


def test_moves_are_checked_against_the_manifests() -> None:
    res = [batch("old"), batch("new"), batch("keep")]
    keys = {"PredictionBatch/old": ["a", "b"], "PredictionBatch/new": ["a", "b"], "PredictionBatch/keep": ["a", "b"]}
    out = _messages(check_moves([mv("PredictionBatch/old", "PredictionBatch/new", 3, 0),
                                 mv("PredictionBatch/x[h1]", "PredictionBatch/keep[zz]", 4, 1),
                                 mv("PredictionBatch/keep[h2]", "PredictionBatch/keep[a2]", 5, 2)], res, keys))
    assert out[0] == (f"jobrunner.yaml:3: $.moved[0]: PredictionBatch/old is still defined ({FILE}:20); `from` names "
                      "the old address, which no manifest defines any more")
    assert out[1] == (f"jobrunner.yaml:4: $.moved[1]: PredictionBatch/keep ({FILE}:20) has no item with key 'zz'; "
                      "`to` names the item's new address")
    assert "has no item with key 'a2'" in out[2] and len(out) == 3
    # adding keys to a batch's rows: the old hash key is gone, the new key is defined
    assert check_moves([mv("PredictionBatch/new[h2]", "PredictionBatch/new[a]")], res, keys) == []


# --- --replace -----------------------------------------------------------------------------------------


def test_replace_names_jobs_items_or_whole_batches(tmp_path: Path) -> None:
    res = [model(), training(), batch()]
    desired = expand(res, tmp_path, state=StateDoc())
    assert expand_replace(["PredictionBatch/eval"], desired) == {"PredictionBatch/eval[a]", "PredictionBatch/eval[b]"}
    assert expand_replace(["PredictionBatch/eval[b]", "Training/poems"], desired) == {
        "PredictionBatch/eval[b]", "Training/poems"}
    with pytest.raises(UsageError, match=r"--replace PredictionBatch/nope, Training/x: no such address"):
        expand_replace(["PredictionBatch/nope", "Training/x"], desired)
    with pytest.raises(UsageError, match="models are created once and never replaced"):
        expand_replace(["Model/poems"], desired)


def test_replace_reruns_exactly_the_named_succeeded_item(tmp_path: Path) -> None:
    res = [batch()]
    doc = apply_all(res, tmp_path)
    plan = plan_for(res, tmp_path, doc, replace=["PredictionBatch/eval[a]"])
    assert actions(plan) == {"PredictionBatch/eval[a]": REPLACE, "PredictionBatch/eval[b]": NOOP}
    assert reasons(plan)["PredictionBatch/eval[a]"] == "replace requested"
    failed = apply_all(res, tmp_path, status="failed")
    assert actions(plan_for(res, tmp_path, failed, replace=["PredictionBatch/eval[b]"]))["PredictionBatch/eval[b]"] \
        == REPLACE


def test_targeting_may_not_leave_a_move_out(tmp_path: Path) -> None:
    doc = running_batch(tmp_path)
    new = [batch("new", inputs=ROWS), training()]
    plan = plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))
    with pytest.raises(UsageError, match=r"--target leaves out addresses the moved list of jobrunner.yaml moves: "
                                         r"PredictionBatch/old\[a\] -> PredictionBatch/new\[a\]"):
        filter_plan(plan, ["Training/poems"])
    assert len(filter_plan(plan, ["Training/poems", "PredictionBatch/new"]).changes) == 3


# --- rendering and saved plans ---------------------------------------------------------------------------


def _moved_and_replaced(tmp_path: Path):
    doc = apply_all([batch("old", inputs=ROWS)], tmp_path, status="running")
    new = [batch("new", inputs=[{"key": "a", "prompt": "A!"}, {"key": "b", "prompt": "B"}])]
    return new, plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))


def test_moves_render_in_text_json_and_markdown(tmp_path: Path) -> None:
    _, plan = _moved_and_replaced(tmp_path)
    text = plan_text.render(plan, color=False)
    assert " -> PredictionBatch/new[b]  (moved from PredictionBatch/old[b]; still running (r-PredictionBatch/old[b]))" \
        in text
    assert "-/+ PredictionBatch/new[a]  (moved from PredictionBatch/old[a], and replaced: input.prompt" in text
    assert "the running r-PredictionBatch/old[a] is canceled first" in text
    assert "Plan: 0 to create, 1 to replace, 0 to retry, 0 to cancel, 0 to forget, 2 to move, 0 waiting." in text
    doc = json.loads(plan_json.render(plan))
    assert doc["moves"] == [{"from": "PredictionBatch/old[a]", "to": "PredictionBatch/new[a]"},
                            {"from": "PredictionBatch/old[b]", "to": "PredictionBatch/new[b]"}]
    by = {c["address"]: c for c in doc["changes"]}
    assert by["PredictionBatch/new[b]"]["action"] == "moved"
    assert by["PredictionBatch/new[b]"]["moved_from"] == "PredictionBatch/old[b]"
    assert by["PredictionBatch/new[a]"]["action"] == "replace" and doc["summary"]["moved"] == 1
    md = plan_markdown.render(plan)
    assert "| create | replace | retry | cancel | forget | adopt | moved | wait | unchanged |" in md
    assert "| 0 | 1 | 0 | 0 | 0 | 0 | 2 | 0 | 0 |" in md
    assert "| `PredictionBatch/new[b]` | moved | moved from PredictionBatch/old[b]; still running" in md


def test_markdown_without_moves_has_no_moved_column(tmp_path: Path) -> None:
    plan = plan_for([batch()], tmp_path, StateDoc(lineage="L"))
    assert "| moved |" not in plan_markdown.render(plan)


def test_saved_plans_carry_moves_and_go_stale_when_the_moves_differ(tmp_path: Path) -> None:
    res, plan = _moved_and_replaced(tmp_path)
    saved = saved_plan_document(plan, res, (), None, replace=["PredictionBatch/new[b]"])
    assert saved["replace"] == ["PredictionBatch/new[b]"]
    by = {e["address"]: e for e in saved["changes"]}
    assert by["PredictionBatch/new[b]"]["moved_from"] == "PredictionBatch/old[b]" and by["PredictionBatch/new[b]"][
        "touches"] is True
    # the same moves again: not stale, everything is executed
    _, again = _moved_and_replaced(tmp_path)
    assert [c.action for c in check_saved_plan(saved, again, res).plan.changes] == [REPLACE, MOVED]
    # the jobs finished since the plan was made: that matters to the replace (no cancel any more), not to
    # the pure move, which does nothing on the provider
    doc = apply_all([batch("old", inputs=ROWS)], tmp_path, status="succeeded")
    finished = plan_for(res, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], res))
    with pytest.raises(StalePlanError) as stale:
        check_saved_plan(saved, finished, res)
    assert list(stale.value.changes) == ["PredictionBatch/new[a]"]
    # planned before the moved entry existed (cancel + create), applied after it: stale, nothing runs
    doc = apply_all([batch("old", inputs=ROWS)], tmp_path, status="running")
    before = plan_for(res, tmp_path, doc)
    with pytest.raises(StalePlanError) as err:
        check_saved_plan(saved_plan_document(before, res, (), None), again, res)
    assert "planned create, now moved" in str(err.value) or "planned create, now replace" in str(err.value)
    # a move the saved plan did not show at all is never applied unreviewed
    only_other = saved_plan_document(plan_for([training()], tmp_path, StateDoc(lineage="L")), [training()], (), None)
    with pytest.raises(StalePlanError, match="moved from PredictionBatch/old\\[a\\] by a moved entry the plan did "
                                             "not show"):
        check_saved_plan(only_other, again, res)


def test_replacing_a_training_reruns_its_dependents_with_the_new_outputs(tmp_path: Path) -> None:
    from jobrunner.plan import compute_plan
    from jobrunner.reconcile.planning import _expand_without

    res = [training(), batch("eval", version="${Training.poems.output.version}")]
    doc = apply_all(res, tmp_path)
    desired = _expand_without({"Training/poems"}, res, tmp_path, doc, {})
    plan = compute_plan(desired, doc, {}, planned_files={FILE}, resources=res, replace={"Training/poems"})
    assert actions(plan) == {"Training/poems": REPLACE, "PredictionBatch/eval[a]": REPLACE,
                             "PredictionBatch/eval[b]": REPLACE}
    assert reasons(plan)["Training/poems"] == "replace requested"
    assert reasons(plan)["PredictionBatch/eval[a]"] == "version known after apply (waits for Training/poems)"


STATUSES = ["pending", "running", "succeeded", "failed", "canceled"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6),
    kept=st.lists(st.booleans(), min_size=6, max_size=6),
    changed=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_a_declared_rename_never_cancels_and_creates_the_same_job(tmp_path: Path, statuses: list[str],
                                                                   kept: list[bool], changed: list[bool]) -> None:
    """Whatever each item's status, and whichever items the renamed batch keeps or edits: a kept item is
    never canceled or created at all (moved, or moved and replaced/retried per the usual rules); a
    dropped one follows the removal rules; state keeps every remote id exactly once."""
    rows = [{"key": f"k{i}", "prompt": f"p{i}"} for i in range(len(statuses))]
    doc = StateDoc(lineage="L")
    old = batch("old", inputs=rows)
    for job, status in zip(expand([old], tmp_path, state=doc), statuses, strict=True):
        record(doc, job, old, status=status)
    ids = sorted(s.remote_id for s in doc.addresses.values())
    new_rows = [{**r, "prompt": r["prompt"] + ("!" if changed[i] else "")} for i, r in enumerate(rows) if kept[i]]
    new = [batch("new", inputs=new_rows)]
    plan = plan_for(new, tmp_path, doc, moved=moved(doc, [mv("PredictionBatch/old", "PredictionBatch/new")], new))
    assert sorted(s.remote_id for s in doc.addresses.values()) == ids
    for i, status in enumerate(statuses):
        change = next(c for c in plan.changes if c.address == f"PredictionBatch/new[k{i}]")
        assert change.moved_from == f"PredictionBatch/old[k{i}]"
        if not kept[i]:
            assert change.action in (CANCEL, FORGET)
            assert (change.action == CANCEL) == (status in ("pending", "running"))
        elif changed[i]:
            assert change.action == REPLACE
        else:
            assert change.action == MOVED  # a failed one says it needs attention, at its new address
            assert (status in ("failed", "canceled")) == ("no attempts left" in change.reason)
