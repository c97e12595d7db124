"""The derived schemas: up to date with the derive script, valid draft-07, shipped, used by the specs."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from jobrunner.schema import MANIFEST_SCHEMA, kind_schema_name, load_schema, schema_names, schema_text
from jobrunner.validate import validate_paths
from tests.helpers.cli import run_cli

REPO = Path(__file__).resolve().parents[2]
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\s*$", re.M)


def load_derive():
    spec = importlib.util.spec_from_file_location("derive", REPO / "schemas" / "derive.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_committed_schemas_match_the_derive_script() -> None:
    generated = load_derive().generate()
    for out_dir in (REPO / "schemas", REPO / "jobrunner" / "schemas"):
        committed = {p.name: p.read_text(encoding="utf-8") for p in out_dir.glob("*.json")}
        assert sorted(committed) == sorted(generated), f"{out_dir}: run python schemas/derive.py"
        for name, text in generated.items():
            assert committed[name] == text, f"{out_dir / name} is out of date: run python schemas/derive.py"


def test_every_schema_is_valid_draft07() -> None:
    for name in schema_names():
        schema = load_schema(name)
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        Draft7Validator.check_schema(schema)


def test_extracted_request_schemas_keep_upstream_fields() -> None:
    upstream = json.loads((REPO / "schemas/upstream/replicate-openapi.json").read_text())
    training = upstream["components"]["schemas"]["schemas_training_request"]
    derived = load_schema("replicate.schemas_training_request.json")
    assert derived["required"] == training["required"]
    assert set(derived["properties"]) == set(training["properties"])
    em = load_schema("emissary.CreateTrainingJobRequestBody.json")
    assert em["required"] == ["base_model", "train_dataset_id"]
    # the upstream oneOf[string, number, integer] would reject integers; the derived type list accepts them
    assert Draft7Validator(em).is_valid({"base_model": "m", "train_dataset_id": "d", "parameters": {"epochs": 3}})


def test_manifest_fields_point_into_the_upstream_schemas() -> None:
    manifest = load_schema(MANIFEST_SCHEMA)
    spec = manifest["definitions"]["ReplicateTrainingSpec"]["properties"]
    assert spec["webhook"] == {"$ref": "#/definitions/replicate.schemas_training_request/properties/webhook"}
    em = manifest["definitions"]["EmissaryTrainingSpec"]["properties"]
    assert em["base_model"]["$ref"].startswith("#/definitions/emissary.CreateTrainingJobRequestBody/")


def test_shipped_schema_files_are_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["jobrunner"]
    for name in schema_names():
        assert any(fnmatch.fnmatch(f"schemas/{name}", g) for g in globs), name


def spec_files() -> list[Path]:
    return sorted((REPO / "specs").rglob("*.yaml"))


def test_every_spec_has_a_modeline_that_resolves() -> None:
    files = spec_files()
    assert len(files) >= 3
    for f in files:
        m = MODELINE.search(f.read_text(encoding="utf-8"))
        assert m, f"{f} has no yaml-language-server modeline"
        target = (f.parent / m.group(1)).resolve()
        assert target == (REPO / "schemas" / MANIFEST_SCHEMA).resolve(), f"{f}: modeline points at {target}"
        assert target.is_file()


def test_specs_validate_clean() -> None:
    result = validate_paths([REPO / "specs"], REPO)
    assert result.errors == []
    kinds = {(r.kind, r.provider) for r in result.resources}
    assert {("Model", "local"), ("Training", "local"), ("PredictionBatch", "local"),
            ("Training", "replicate"), ("PredictionBatch", "replicate"), ("Training", "emissary")} <= kinds


def test_examples_have_what_the_readme_promises() -> None:
    result = validate_paths([REPO / "specs" / "examples"], REPO)
    by = {r.address: r for r in result.resources}
    training = by["Training/poems-ngram"].spec
    assert training["model"] == "jobrunner/ngram"
    assert training["version"] == "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
    assert training["destination"] == "me/poems" and training["input"]["train_data"] == {"$file": "data/poems.txt"}
    assert (REPO / "specs/examples/data/poems.txt").stat().st_size <= 100_000
    batch = by["PredictionBatch/poems-eval"].spec
    assert batch["version"] == "${Training.poems-ngram.output.version}"
    assert batch["output_file"] == "out/poems-eval.jsonl"
    items = result.items["PredictionBatch/poems-eval"]
    assert items and all("seed" in item.input for item in items)
    assert by["Model/poems"].spec["owner"] == "me"


def test_schema_command() -> None:
    r = run_cli("schema")
    assert r.code == 0 and json.loads(r.stdout) == load_schema(MANIFEST_SCHEMA)
    r = run_cli("schema", "--kind", "predictionbatch")
    assert r.code == 0 and json.loads(r.stdout)["properties"]["kind"] == {"const": "PredictionBatch"}
    r = run_cli("schema", "--list")
    assert "replicate.schemas_training_request.json" in r.stdout.split()
    r = run_cli("schema", "--kind", "Job")
    assert r.code == 1 and "unknown kind 'Job'" in r.stderr and "Traceback" not in r.stderr
    assert kind_schema_name(None) == MANIFEST_SCHEMA
    assert schema_text("Model.schema.json").startswith("{")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("JOBRUNNER_TEST_WHEEL") != "1",
                    reason="builds the package into a fresh virtualenv; set JOBRUNNER_TEST_WHEEL=1")
def test_installed_package_prints_schemas_from_any_directory(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(REPO)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A PYTHONPATH pointing at a checkout would make the check below test that checkout instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(venv / "bin" / "jobrunner"), "schema"], cwd=elsewhere, check=True,
                         capture_output=True, text=True, env=env).stdout
    assert json.loads(out)["title"] == "jobrunner manifest"
    where = subprocess.run([str(py), "-c", "import jobrunner; print(jobrunner.__file__)"], cwd=elsewhere,
                           check=True, capture_output=True, text=True, env=env).stdout
    assert str(venv) in where  # the installed copy, not the checkout


def test_validate_specs_command_exits_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    r = run_cli("validate", "specs/")
    assert r.code == 0 and "Success!" in r.stdout


def test_inlined_validator_agrees_with_the_published_schema() -> None:
    """validate uses a $ref-inlined copy for speed; editors use the file: they must agree."""
    from jobrunner.loader import load_file
    from jobrunner.schema import manifest_validator

    published = Draft7Validator(load_schema(MANIFEST_SCHEMA))
    docs = []
    for f in spec_files() + sorted((REPO / "tests/manifests/cases").glob("*.yaml")):
        docs += [d.data for d in load_file(f, f.name).documents]
    assert len(docs) > 40
    for data in docs:
        ours = sorted((list(e.absolute_path), e.message) for e in manifest_validator().iter_errors(data))
        theirs = sorted((list(e.absolute_path), e.message) for e in published.iter_errors(data))
        assert ours == theirs
