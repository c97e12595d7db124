"""References: finding, resolving, ordering and cycles."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jobrunner.errors import ManifestError
from jobrunner.references import (
    REF_PATTERN,
    Ref,
    dependency_order,
    find_cycles,
    find_malformed,
    find_refs,
    resolve_refs,
)
from jobrunner.resources import Resource

REPO = Path(__file__).resolve().parents[2]


def res(kind: str, name: str, spec: dict) -> Resource:
    return Resource(kind=kind, name=name, spec=spec, file="m.yaml", line=1)


def test_find_refs_with_paths() -> None:
    spec = {"version": "${Training.a.output.version}", "inputs": [{"p": "x ${Model.m.output.url} y"}]}
    assert find_refs(spec, "$.spec") == [
        Ref("Training", "a", "version", "$.spec.version"),
        Ref("Model", "m", "url", "$.spec.inputs[0].p"),
    ]


def test_malformed_and_escaped() -> None:
    spec = {"a": "${Training.a.outputs.version}", "b": "$${literal}", "c": "${oops"}
    assert find_malformed(spec) == [("$.a", "${Training.a.outputs.version}"), ("$.c", "${oops")]


def test_resolve_whole_string_keeps_type_and_interpolates() -> None:
    value = {"v": "${Training.a.output.version}", "n": "${PredictionBatch.b.output.count}",
             "s": "n=${PredictionBatch.b.output.count}", "lit": "$${x}"}
    out, unknown = resolve_refs(value, {"Training/a": {"version": "me/p:abc"}, "PredictionBatch/b": {"count": 3}})
    assert not unknown
    assert out == {"v": "me/p:abc", "n": 3, "s": "n=3", "lit": "${x}"}


def test_resolve_unknown_leaves_reference_in_place() -> None:
    out, unknown = resolve_refs({"v": "${Training.a.output.version}"}, {})
    assert unknown and out == {"v": "${Training.a.output.version}"}


def test_dependency_order_is_topological_and_stable() -> None:
    rs = [
        res("PredictionBatch", "eval", {"version": "${Training.t.output.version}"}),
        res("Training", "t", {"destination": "${Model.m.output.name}"}),
        res("Model", "m", {}),
        res("Model", "a", {}),
    ]
    assert dependency_order(rs) == ["Model/a", "Model/m", "Training/t", "PredictionBatch/eval"]


def test_cycles_are_found_and_named() -> None:
    rs = [
        res("Training", "a", {"x": "${Training.b.output.version}"}),
        res("Training", "b", {"x": "${Training.a.output.version}"}),
        res("Training", "c", {"x": "${Training.c.output.version}"}),
    ]
    cycles = find_cycles(rs)
    assert ["Training/c", "Training/c"] in cycles
    assert ["Training/a", "Training/b", "Training/a"] in cycles
    with pytest.raises(ManifestError) as exc:
        dependency_order(rs)
    assert "reference cycle" in str(exc.value)


def test_schema_reference_pattern_matches_the_derive_script() -> None:
    spec = importlib.util.spec_from_file_location("derive", REPO / "schemas" / "derive.py")
    derive = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(derive)
    assert f"^{derive.REF}$" == REF_PATTERN
