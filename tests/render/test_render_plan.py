"""Plan renderers: text lines and summary, JSON fields, markdown comment and its size cap."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.plan import compute_plan
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.spec import expand
from jobrunner.state.model import StateDoc
from tests.core.plan_helpers import FILE, apply_all, batch, model, plan_for, training


@pytest.fixture()
def mixed(tmp_path: Path):
    """A plan with a create, a replace with a secret among its inputs, a forget and a wait."""
    res = [model(), training(input={"order": 4, "api_key": "k-111111"}), batch(name="run"), batch(name="gone")]
    doc = apply_all(res, tmp_path)
    doc.addresses["PredictionBatch/run[a]"].status = "running"
    new = [model(), training(input={"order": 5, "api_key": "k-222222"}, sensitive=["order"]), batch(name="run"),
           batch(name="fresh")]
    return plan_for(new, tmp_path, doc)


def test_text_lines_and_summary(mixed) -> None:
    out = plan_text.render(mixed)
    lines = out.splitlines()
    assert "-/+ Training/poems  (a sensitive value or file changed)" in lines
    assert "  + PredictionBatch/fresh[a]  (new batch item)" in lines
    assert "  - PredictionBatch/gone[a]  (forget: removed from the manifests (last run succeeded))" in lines
    assert "  ~ PredictionBatch/run[a]  (wait: running (r-PredictionBatch/run[a]))" in lines
    assert lines[-1] == "Plan: 2 to create, 1 to replace, 0 to retry, 0 to cancel, 2 to forget, 1 waiting."
    assert "k-111111" not in out and "k-222222" not in out
    assert "Model/poems" not in out  # converged: counted, not listed
    assert "\x1b[" not in out


def test_text_colours_only_when_asked(mixed) -> None:
    assert "\x1b[32m" in plan_text.render(mixed, color=True)


def test_text_diff_lines_for_replace(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path)
    out = plan_text.render(plan_for([training(input={"order": 5, "temperature": 0.7})], tmp_path, doc))
    assert "        ~ input.order: 4 -> 5" in out
    assert "        + input.temperature: 0.7" in out


def test_text_no_changes(tmp_path: Path) -> None:
    res = [training()]
    doc = apply_all(res, tmp_path)
    assert plan_text.render(plan_for(res, tmp_path, doc)) == "No changes. Your jobs match the manifests.\n"
    doc.addresses["Training/poems"].status = "running"
    out = plan_text.render(plan_for(res, tmp_path, doc))
    assert out.endswith("No changes. 1 job is still running.\n")
    assert "Jobs still running or needing attention:" in out


def test_text_failed_for_good_is_not_called_converged(tmp_path: Path) -> None:
    doc = apply_all([training()], tmp_path, status="failed", error="boom")
    out = plan_text.render(plan_for([training()], tmp_path, doc), color=False)
    assert "  = Training/poems  (noop: r-Training/poems failed: boom; no attempts left" in out
    assert out.endswith("No changes. 1 needs attention (see above).\n")


def test_json_document(mixed) -> None:
    doc = json.loads(plan_json.render(mixed))
    assert doc["format_version"] == "1.0" and doc["has_changes"] is True
    assert doc["summary"]["create"] == 2 and doc["summary"]["noop"] == 2
    by = {c["address"]: c for c in doc["changes"]}
    t = by["Training/poems"]
    assert t["action"] == "replace" and t["fingerprint"]["before"] != t["fingerprint"]["after"]
    assert t["input"]["input"] == {"order": "(sensitive)", "api_key": "(sensitive)"}
    assert t["remote_id"] == "r-Training/poems" and t["remote_status"] == "succeeded"
    assert by["PredictionBatch/run[a]"]["remote_status"] == "running"
    assert by["PredictionBatch/gone[a]"]["resource"] == "PredictionBatch/gone"
    assert by["Model/poems"]["quiet"] is True
    text = json.dumps(doc)
    assert "k-111111" not in text and "k-222222" not in text


def test_json_known_after_apply(tmp_path: Path) -> None:
    res = [training(), batch(version="${Training.poems.output.version}")]
    doc = json.loads(plan_json.render(plan_for(res, tmp_path, StateDoc())))
    item = next(c for c in doc["changes"] if c["address"] == "PredictionBatch/eval[a]")
    assert item["fingerprint"] == {"before": None, "after": None, "after_unknown": True}
    assert item["depends_on"] == ["Training/poems"]


def test_markdown_comment(mixed) -> None:
    out = plan_markdown.render(mixed)
    assert out.startswith("<!-- jobrunner-plan -->")
    assert "| `Training/poems` | replace | a sensitive value or file changed |" in out
    assert "| 2 | 1 | 0 | 0 | 2 | 0 | 1 | 2 |" in out  # counts, unchanged last
    assert "<details><summary><code>PredictionBatch/fresh[a]</code>: create</summary>" in out
    assert "k-111111" not in out and "k-222222" not in out
    assert "2 converged jobs not listed." in out


def test_markdown_escapes_table_cells(tmp_path: Path) -> None:
    doc = apply_all([training(retry={"max_attempts": 2})], tmp_path, status="failed",
                    error="bad | input <script>alert(1)</script>\nsecond line")
    out = plan_markdown.render(plan_for([training(retry={"max_attempts": 2})], tmp_path, doc))
    row = next(line for line in out.splitlines() if line.startswith("| `Training/poems`"))
    assert "bad \\| input &lt;script&gt;" in row and "second line" in row and row.count(" | ") == 2


def test_markdown_no_changes(tmp_path: Path) -> None:
    res = [training()]
    out = plan_markdown.render(plan_for(res, tmp_path, apply_all(res, tmp_path)))
    assert "**No changes. Your jobs match the manifests.**" in out and "| Address |" not in out


def _big_plan(tmp_path: Path, n: int, replace: bool):
    rows = [{"key": f"item-{i:05d}", "prompt": f"prompt number {i} " + "x" * 40} for i in range(n)]
    res = [batch(inputs=rows)]
    doc = StateDoc(lineage="L")
    if replace:
        doc = apply_all(res, tmp_path)
        res = [batch(inputs=[{**r, "prompt": r["prompt"] + " (edited)"} for r in rows])]
    desired = expand(res, tmp_path)
    return compute_plan(desired, doc, {}, planned_files={FILE}, resources=res)


def test_markdown_of_10000_items_stays_under_the_limit(tmp_path: Path) -> None:
    plan = _big_plan(tmp_path, 10_000, replace=False)
    out = plan_markdown.render(plan, artifact="the `plan-json` artifact")
    assert len(out) < 60_000
    assert out.startswith("<!-- jobrunner-plan -->") and "| 10000 | 0 |" in out
    rows = [line for line in out.splitlines() if line.startswith("| `PredictionBatch/eval[")]
    assert 100 < len(rows) < 10_000
    assert rows[0].startswith("| `PredictionBatch/eval[item-00000]`")  # stable order: the first rows stay
    assert f"**{10_000 - len(rows)} more rows not shown**" in out and "the `plan-json` artifact" in out
    assert "| `PredictionBatch/eval` | 10,000 create |" in out  # every batch is summed up, cut or not
    assert "<details>" not in out


def test_markdown_cuts_details_before_the_table(tmp_path: Path) -> None:
    plan = _big_plan(tmp_path, 200, replace=True)
    out = plan_markdown.render(plan)
    assert len(out) < 60_000
    rows = [line for line in out.splitlines() if line.startswith("| `PredictionBatch/eval[")]
    assert len(rows) == 200  # the whole table
    shown = out.count("<details>")
    assert 0 < shown < 200
    assert f"Input details of {200 - shown} more jobs were cut" in out and "plan.json" in out


def test_text_lists_the_inputs_of_a_new_training_but_not_of_each_batch_item(tmp_path: Path) -> None:
    out = plan_text.render(plan_for([model(), training(), batch()], tmp_path, StateDoc()), color=False)
    assert "  + Training/poems  (new job)\n        + destination: \"me/poems\"\n        + input.order: 4\n" in out
    assert "        + visibility: \"private\"" in out
    assert "prompt" not in out
