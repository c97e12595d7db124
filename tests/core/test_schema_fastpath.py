"""The quick validity test of batch rows (jobrunner.schema_fastpath) never vouches for a row
jsonschema would reject, and does vouch for the valid rows of the schemas Cog models publish."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from jobrunner.providers.adapters.local_builtins import ECHO_INPUT, NGRAM_PREDICT_INPUT, SLEEP_INPUT
from jobrunner.schema_fastpath import certainly_valid

# A Cog `Input` as Replicate serves it: x-order, a choice through allOf/$ref, a list of URIs.
COG_INPUT: dict[str, Any] = {
    "type": "object", "title": "Input", "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
        "width": {"type": "integer", "minimum": 64, "maximum": 1024, "default": 512, "x-order": 1},
        "guidance": {"type": "number", "exclusiveMinimum": 0, "maximum": 20.5, "x-order": 2},
        "scheduler": {"allOf": [{"$ref": "#/components/schemas/scheduler"}], "default": "DDIM", "x-order": 3},
        "images": {"type": "array", "items": {"type": "string", "format": "uri"}, "maxItems": 3},
        "seed": {"type": ["integer", "null"]},
        "caption": {"type": "string", "minLength": 1, "maxLength": 5},
    },
    "components": {"schemas": {"scheduler": {"title": "scheduler", "enum": ["DDIM", "K_EULER"], "type": "string",
                                             "description": "An enumeration."}}},
}


def _errors(schema: Any, value: Any) -> list[Any]:
    return list(Draft7Validator(schema).iter_errors(value))


def test_cog_schemas_compile_and_agree_on_examples() -> None:
    check = certainly_valid(COG_INPUT)
    assert check is not None
    good = {"prompt": "a cat", "width": 64, "guidance": 7.5, "scheduler": "K_EULER",
            "images": ["file:///x"], "seed": None, "caption": "hello", "extra": {"any": [1]}}
    assert check(good) and not _errors(COG_INPUT, good)
    for bad in ({"width": 64}, {"prompt": "a", "width": 1025}, {"prompt": "a", "width": 64.0},
                {"prompt": "a", "guidance": 0}, {"prompt": "a", "scheduler": "ddim"},
                {"prompt": "a", "images": ["a", "b", "c", "d"]}, {"prompt": "a", "seed": True},
                {"prompt": "a", "caption": ""}, {"prompt": "a", "caption": "toolong"}, {"prompt": 3}):
        assert not check(bad), bad
    # 64.0 is an integer to jsonschema: not vouched for, so jsonschema decides (and accepts it).
    assert not _errors(COG_INPUT, {"prompt": "a", "width": 64.0})
    for builtin in (ECHO_INPUT, SLEEP_INPUT, NGRAM_PREDICT_INPUT):
        assert certainly_valid(builtin) is not None
    sleep = certainly_valid(SLEEP_INPUT)
    assert sleep is not None
    assert sleep({"seconds": 0.5, "fail": False}) is True
    assert sleep({"seconds": 0.5, "extra": 1}) is False


def test_unmodelled_keywords_leave_every_row_to_jsonschema() -> None:
    for schema in ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}},
                   {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                   {"$ref": "#/definitions/missing"}, {"$ref": "#/definitions/a%20b", "definitions": {"a%20b": {}}},
                   {"$ref": "#/definitions/a", "type": "string", "definitions": {"a": {}}},
                   {"type": "object", "patternProperties": {"^x": {}}},
                   {"type": "integer", "multipleOf": 2},
                   {"enum": [[1], 2]}, {"enum": [float("nan")]}, {"type": "decimal"}):
        assert certainly_valid(schema) is None, schema


def test_recursive_refs_are_not_modelled() -> None:
    schema = {"$ref": "#/definitions/node",
              "definitions": {"node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/node"}}}}}
    assert certainly_valid(schema) is None


# --- never vouches for an invalid instance ------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5), st.just(float("nan")),
                     st.just(2.0), st.sampled_from(["", "a", "ab", "DDIM", "abcdef"]))
_instances = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)), max_leaves=8)
_types = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array"])
_bound = st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "type": st.one_of(_types, st.lists(_types, min_size=1, max_size=2)),
        "enum": st.lists(_scalars.filter(lambda v: v == v), min_size=1, max_size=3),
        "const": _scalars.filter(lambda v: v == v),
        "minimum": _bound, "maximum": _bound, "exclusiveMinimum": _bound, "exclusiveMaximum": _bound,
        "minLength": st.integers(0, 3), "maxLength": st.integers(0, 3),
        "minItems": st.integers(0, 2), "maxItems": st.integers(0, 2),
        "title": st.just("T"), "x-order": st.integers(0, 3), "format": st.just("uri"),
    })


_schemas = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda base, props, req, extra: {**base, "properties": props, "required": req,
                                              "additionalProperties": extra},
              _leaf(), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
              st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
              st.one_of(st.booleans(), inner)),
    st.builds(lambda base, items: {**base, "items": items}, _leaf(), inner),
    st.builds(lambda subs: {"allOf": subs}, st.lists(inner, min_size=1, max_size=2)),
    st.builds(lambda subs: {"anyOf": subs}, st.lists(inner, min_size=1, max_size=2)),
    st.builds(lambda target: {"$ref": "#/definitions/t", "definitions": {"t": target}}, inner),
), max_leaves=6)


@settings(max_examples=600, deadline=None)
@given(_schemas, _instances)
def test_a_vouched_instance_has_no_jsonschema_error(schema: dict[str, Any], value: Any) -> None:
    check = certainly_valid(schema)
    if check is not None and check(value):
        assert _errors(schema, value) == []


@settings(max_examples=300, deadline=None)
@given(_schemas, _instances)
def test_the_quick_test_is_not_vacuous(schema: dict[str, Any], value: Any) -> None:
    """Where it compiles, a schema without constraints on what was drawn vouches for the same as
    jsonschema on plain strings, and every schema vouches for some valid plain instances."""
    check = certainly_valid(schema)
    if check is None or _errors(schema, value):
        return
    if isinstance(value, str) or value is None:
        # no integer/float ambiguity for these: vouched for whenever jsonschema accepts them
        assert check(value)
