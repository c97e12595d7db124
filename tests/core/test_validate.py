"""The validator: schema errors phrased for people, semantic checks, warnings, sorting, output formats."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.loader import load_text
from jobrunner.validate import ValidationResult, validate_documents, validate_paths
from tests.helpers.cli import run_cli

V = "b" * 64  # a version whose input schema is not known offline
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"  # built-in: schema known
HEAD = "apiVersion: jobrunner/v1\n"


def check(text: str, root: Path, file: str = "m.yaml") -> ValidationResult:
    loaded = load_text(text, file)
    assert not loaded.diagnostics
    return validate_documents(loaded.documents, root)


def lines(result: ValidationResult) -> list[str]:
    return [d.format() for d in result.diagnostics]


MODEL = (
    HEAD
    + "kind: Model\nmetadata: {name: poems}\n"
    "spec: {provider: local, owner: me, name: poems, visibility: private, hardware: cpu}\n"
)
TRAINING = HEAD + f"""kind: Training
metadata: {{name: t}}
spec:
  model: acme/base
  version: {V}
  destination: me/poems
  input: {{order: 3}}
"""


def test_valid_workspace_builds_resources_with_positions(tmp_path: Path) -> None:
    text = MODEL + "---\n" + TRAINING + "---\n" + HEAD + """kind: PredictionBatch
metadata: {name: b, labels: {team: nlp}}
spec:
  version: ${Training.t.output.version}
  inputs: [{prompt: hi}]
"""
    r = check(text, tmp_path)
    assert r.ok and r.diagnostics == []
    assert [x.address for x in r.resources] == ["Model/poems", "Training/t", "PredictionBatch/b"]
    t = r.resources[1]
    assert t.file == "m.yaml" and t.line == 6 and t.position("$.spec.input.order").line == 13
    assert r.resources[2].labels == {"team": "nlp"}
    assert len(r.items["PredictionBatch/b"]) == 1


def test_all_errors_at_once_sorted(tmp_path: Path) -> None:
    text = HEAD + "kind: Training\nmetadata: {name: t}\nspec:\n  versoin: x\n  input: 3\n"
    r = check(text, tmp_path)
    assert lines(r) == [
        "m.yaml:4:1: Training/t: $.spec: missing required field `destination`",
        "m.yaml:4:1: Training/t: $.spec: missing required field `version`",
        "m.yaml:5:3: Training/t: $.spec.versoin: unknown field `versoin` (did you mean `version`?)",
        "m.yaml:6:3: Training/t: $.spec.input: expected a mapping, got a number 3",
    ]


def test_provider_dispatch_gives_one_error_not_alternatives(tmp_path: Path) -> None:
    text = HEAD + "kind: Training\nmetadata: {name: t}\nspec:\n  provider: emissary\n  project_id: p\n" \
                  "  base_model: m\n  train_dataset_id: 7\n"
    r = check(text, tmp_path)
    assert len(r.errors) == 1
    assert r.errors[0].json_path == "$.spec.train_dataset_id"
    assert r.errors[0].message == "must be a dataset id (string) or {$file: path} (got 7)"


def test_unknown_provider(tmp_path: Path) -> None:
    r = check(TRAINING.replace("spec:\n", "spec:\n  provider: aws\n"), tmp_path)
    (err,) = [d for d in r.errors if d.json_path == "$.spec.provider"]
    assert "local, replicate, emissary" in err.message and '"aws"' in err.message


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    text = TRAINING.replace("input: {order: 3}", "input: {order: 3, fast: yes, day: 2024-05-01}\n"
                            "  webhook_events_filter: [completed]\n  sensitive: [api_key]\n  timeout: 30s")
    r = check(text, tmp_path)
    assert r.ok
    msgs = [d.message for d in r.warnings]
    assert any("not declared as a Model" in m for m in msgs)
    assert any("`yes` is read as the boolean true" in m for m in msgs)
    assert any("looks like a date" in m for m in msgs)
    assert any("has no effect without a webhook" in m for m in msgs)
    assert any("sensitive key `api_key`" in m for m in msgs)
    assert any("under a minute" in m for m in msgs)


def test_duplicate_addresses_across_files(tmp_path: Path) -> None:
    a = load_text(MODEL, "a.yaml").documents
    b = load_text(MODEL.replace("name: poems}", "name: poems2}", 1), "b.yaml").documents
    b2 = load_text(MODEL, "c.yaml").documents
    r = validate_documents(a + b + b2, tmp_path)
    msgs = lines(r)
    assert any(m.startswith("c.yaml:3:") and "duplicate address Model/poems" in m and "a.yaml:1" in m for m in msgs)
    assert any(m.startswith("b.yaml:") and "model me/poems is already declared by Model/poems" in m for m in msgs)


def test_files_inside_inputs_file_rows_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"prompt": "x", "image": {"$file": "nope.png"}}\n')
    text = HEAD + "kind: PredictionBatch\nmetadata: {name: b}\nspec:\n" \
        f"  version: {V}\n  inputs_file: rows.jsonl\n  output_file: ../out.jsonl\n---\n" + HEAD + \
        "kind: PredictionBatch\nmetadata: {name: c}\nspec:\n" \
        f"  version: {V}\n  inputs: [{{prompt: a}}]\n  output_file: same.jsonl\n---\n" + HEAD + \
        "kind: PredictionBatch\nmetadata: {name: d}\nspec:\n" \
        f"  version: {V}\n  inputs: [{{prompt: a}}]\n  output_file: ./same.jsonl\n"
    r = check(text, tmp_path)
    msgs = lines(r)
    assert any(m.startswith("rows.jsonl:1:1: PredictionBatch/b: $.input.image: $file 'nope.png' not found")
               for m in msgs), msgs
    assert any("output_file '../out.jsonl' is outside the workspace" in m for m in msgs)
    assert any("m.yaml:23:" in m and "also written by PredictionBatch/c" in m for m in msgs)


def test_emissary_outputs_and_reference_to_model(tmp_path: Path) -> None:
    text = HEAD + "kind: Training\nmetadata: {name: ft}\nspec:\n  provider: emissary\n  project_id: p\n" \
        "  base_model: m\n  train_dataset_id: d\n---\n" + HEAD + "kind: PredictionBatch\nmetadata: {name: b}\n" \
        "spec:\n  version: " + V + "\n  inputs: [{ckpt: '${Training.ft.output.checkpoint}', " \
        "v: '${Training.ft.output.version}'}]\n"
    r = check(text, tmp_path)
    (err,) = r.errors
    assert "Training/ft (emissary) has no output `version`" in err.message
    assert "checkpoint, model_download_url" in err.message


def test_reference_with_wrong_kind_suggests_the_right_one(tmp_path: Path) -> None:
    r = check(MODEL + "---\n" + TRAINING.replace("destination: me/poems", "destination: ${Models.poems.output.name}"),
              tmp_path)
    assert any("unknown kind Models" in d.message for d in r.errors)
    r = check(MODEL + "---\n" + TRAINING.replace("destination: me/poems", "destination: ${Training.poems.output.name}"),
              tmp_path)
    assert any("did you mean Model/poems?" in d.message for d in r.errors)


def test_destination_on_another_provider(tmp_path: Path) -> None:
    r = check(MODEL.replace("provider: local", "provider: replicate") + "---\n" + TRAINING, tmp_path)
    assert any("declared on provider replicate" in d.message for d in r.errors)


def test_validate_paths_reads_files_relative_to_root(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(MODEL)
    (tmp_path / "specs" / "ignored.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    r = validate_paths([tmp_path / "specs"], tmp_path)
    assert r.ok and r.files == ["specs/a.yaml"] and r.resources[0].file == "specs/a.yaml"


def run(args: list[str]) -> tuple[int, str]:
    """`jobrunner ARGS` through the shared CLI helper: the exit code and stdout + stderr."""
    r = run_cli(*args)
    return r.code, r.output


def test_validate_command_text_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text(MODEL)
    code, out = run(["validate"])
    assert code == 0 and "Success! 1 resource in 1 file is valid." in out
    (tmp_path / "bad.yaml").write_text(HEAD + "kind: Model\nmetadata: {name: x}\nspec: {owner: me}\n")
    code, out = run(["validate"])
    assert code == 1 and out.startswith("bad.yaml:4:1: Model/x: $.spec: missing required field `hardware`")
    code, out = run(["validate", "--format", "json", "bad.yaml"])
    doc = json.loads(out)
    assert code == 1
    assert doc["format_version"] == "1.0" and doc["valid"] is False
    assert doc["error_count"] == 3 and doc["warning_count"] == 0
    assert doc["diagnostics"][0] == {
        "severity": "error", "file": "bad.yaml", "line": 4, "column": 1, "address": "Model/x",
        "json_path": "$.spec", "message": "missing required field `hardware`",
    }
    code, out = run(["validate", "missing-dir"])
    assert code == 1 and "no such file or directory: missing-dir" in out


def test_inputs_checked_against_builtin_version_schema(tmp_path: Path) -> None:
    (tmp_path / "poems.txt").write_text("roses are red\n")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b", "temperature": "hot"}\n')
    text = HEAD + f"""kind: Training
metadata: {{name: t}}
spec:
  model: jobrunner/ngram
  version: {NGRAM}
  destination: me/poems
  input:
    train_data: {{$file: poems.txt}}
    ordr: 5
---
""" + HEAD + f"""kind: PredictionBatch
metadata: {{name: b}}
spec:
  version: jobrunner/ngram:{NGRAM}
  input_defaults: {{max_tokens: "80"}}
  inputs:
    - {{prompt: a, seed: 1.5}}
    - {{prompt: b}}
    - {{prompt: "${{Training.t.output.version}}", max_tokens: 3}}
---
""" + HEAD + f"""kind: PredictionBatch
metadata: {{name: c}}
spec:
  version: {NGRAM}
  inputs_file: rows.jsonl
"""
    r = check(text, tmp_path)
    got = [(d.file, d.line, d.json_path, d.message) for d in r.errors]
    assert got == [
        (
            "m.yaml",
            10,
            "$.spec.input.ordr",
            "jobrunner/ngram input schema: unknown field `ordr` (did you mean `order`?)",
        ),
        (
            "m.yaml",
            17,
            "$.spec.input_defaults.max_tokens",
            'jobrunner/ngram input schema: expected an integer, got a string "80"',
        ),
        ("m.yaml", 19, "$.spec.inputs[0].seed", "jobrunner/ngram input schema: expected an integer, got a number 1.5"),
        (
            "rows.jsonl",
            2,
            "$.input.temperature",
            'version a3c8c00c979c input schema: expected a number, got a string "hot"',
        ),
    ]


def test_inputs_checked_against_cached_version_schema(tmp_path: Path) -> None:
    cache = tmp_path / ".jobrunner" / "cache" / "schemas" / "replicate"
    cache.mkdir(parents=True)
    openapi = {"components": {"schemas": {
        "Input": {"type": "object", "properties": {"prompt": {"type": "string"},
                                                   "size": {"allOf": [{"$ref": "#/components/schemas/size"}]}}},
        "size": {"enum": ["small", "large"]}}}}
    (cache / f"{V}.json").write_text(json.dumps(openapi))
    text = HEAD + f"kind: PredictionBatch\nmetadata: {{name: b}}\nspec:\n  provider: replicate\n" \
                  f"  version: {V}\n  inputs: [{{prompt: a, size: huge}}]\n"
    r = check(text, tmp_path)
    (err,) = r.errors
    assert err.json_path == "$.spec.inputs[0].size" and '"huge"' in err.message


def test_yaml11_numbers_warn(tmp_path: Path) -> None:
    text = HEAD + f"kind: PredictionBatch\nmetadata: {{name: b}}\nspec:\n  version: {V}\n  timeout: 1:30\n" \
                  "  inputs: [{prompt: a, mode: 0755, n: 12}]\n"
    r = check(text, tmp_path)
    assert r.ok
    assert [(d.line, d.json_path) for d in r.warnings] == [(6, "$.spec.timeout"), (7, "$.spec.inputs[0].mode")]
    assert "`1:30` is read as the number 90" in r.warnings[0].message
    assert "`0755` is read as the number 493" in r.warnings[1].message


def test_manifests_outside_the_workspace_keep_their_own_files(tmp_path: Path) -> None:
    """`jobrunner validate /elsewhere/specs` from an unrelated directory: files beside the manifest are fine."""
    (tmp_path / "ws").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "poems.txt").write_text("roses\n")
    (elsewhere / "t.yaml").write_text(TRAINING.replace("input: {order: 3}", "input: {data: {$file: poems.txt}}"))
    (elsewhere / "u.yaml").write_text(
        TRAINING.replace("name: t}", "name: u}").replace("input: {order: 3}", "input: {data: {$file: ../x.txt}}"))
    r = validate_paths([elsewhere], tmp_path / "ws")
    assert [d.file for d in r.errors] == ["../elsewhere/u.yaml"]
    assert "outside the workspace" in r.errors[0].message


def test_validate_command_with_no_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci.yaml").write_text("on: push\n")
    code, out = run(["validate"])
    assert code == 0 and out.startswith("No manifests found")


def test_input_errors_point_at_the_right_row_after_a_bad_row(tmp_path: Path) -> None:
    text = HEAD + f"kind: PredictionBatch\nmetadata: {{name: b}}\nspec:\n  version: {NGRAM}\n  inputs:\n" \
                  "    - just text\n    - {prompt: a, seed: x}\n"
    r = check(text, tmp_path)
    assert [(d.line, d.json_path) for d in r.errors] == [(7, "$.spec.inputs[0]"), (8, "$.spec.inputs[1].seed")]


def test_validate_github_annotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ml"
    ws.mkdir()
    (ws / "jobrunner.yaml").write_text("parallelism: 2\n")
    (ws / "bad.yaml").write_text(HEAD + "kind: Model\nmetadata: {name: x}\nspec: {owner: me, name: n, visibility: "
                                 "private, hardware: cpu, colour: red}\n")
    monkeypatch.chdir(ws)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    code, out = run(["validate", "--format", "github"])
    assert code == 1
    assert out.splitlines() == [
        "::error file=ml/bad.yaml,line=4,col=64,title=Model/x::$.spec.colour: unknown field `colour`; "
        "allowed: description, hardware, name, owner, provider, visibility",
        "1 error, 0 warnings in 1 file.",
    ]


@pytest.mark.parametrize("version, extra", [("jobrunner/v2", ""), ("jobrunner/V1", " (apiVersion is case-sensitive)")])
def test_another_jobrunner_api_version_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str,
                                                      extra: str) -> None:
    """Found by a directory scan and reported at file:line (it used to be skipped: "No manifests found", exit 0)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text("# a batch\n" + TRAINING.replace("jobrunner/v1", version))
    code, out = run(["validate"])
    assert code == 1
    assert out.splitlines()[0] == (f"m.yaml:2:1: $.apiVersion: unsupported apiVersion {version}; "
                                   f"this jobrunner reads jobrunner/v1{extra}")


def test_files_named_as_also_are_read_whatever_they_hold(tmp_path: Path) -> None:
    """Planning passes the files state tracks jobs from: read even when a scan would skip them."""
    (tmp_path / "gone.yaml").write_text("# apiVersion: jobrunner/v1 (everything commented out)\n")
    (tmp_path / "mangled.yaml").write_text(TRAINING.replace("apiVersion: jobrunner/v1", "apiVerison: jobrunner/v1"))
    (tmp_path / "blank.yaml").write_text("\n  \n")
    r = validate_paths([tmp_path], tmp_path, also=[tmp_path / "mangled.yaml", tmp_path / "blank.yaml"])
    assert r.files == ["blank.yaml", "gone.yaml", "mangled.yaml"]
    assert r.empty_files == ["blank.yaml", "gone.yaml"]
    assert [d.file for d in r.errors] == ["mangled.yaml"] and "missing apiVersion" in r.errors[0].message
