"""A quick "certainly valid" test for a version's input schema, so a big batch's rows skip jsonschema.

`validate` checks every batch row against the version's input schema. jsonschema's `iter_errors`
walks its keyword machinery for each row (about 6 µs per row, 0.6 s of a 100,000-row plan), though
nearly every row is valid. `certainly_valid(schema)` compiles the keywords Cog input schemas are
made of into a plain predicate. The predicate is conservative: True only when Draft7Validator
would report no error, False when the row might be invalid (or uses something the predicate does
not model exactly, e.g. 1.0 for an integer). A row it does not vouch for goes through `iter_errors`
as before, so the errors found, their order and their messages are unchanged; only valid rows are
spared the walk.

A schema using any keyword outside the modelled set (`oneOf`, `pattern`, `patternProperties`,
`if`, `$id`, ...) compiles to None: every row is checked by jsonschema. Annotations (`title`,
`description`, `default`, `format`, which Draft7Validator does not assert without a format checker,
`x-*` vendor keys such as Cog's `x-order`, `nullable`, which Draft 7 ignores) never change validity.

Pure: no I/O.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Python types whose jsonschema (Draft 7) type is unambiguous. Anything else (a float for
# "integer", a dict subclass, a date from YAML) is left to jsonschema.
_PLAIN = (str, int, float, bool, type(None), dict, list)
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "object": (dict,), "array": (list,),
}
_NUMBERS = (int, float)
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "format", "nullable", "readOnly",
                          "writeOnly", "deprecated", "$comment", "$schema", "definitions", "components"})
_KEYWORDS = frozenset({"type", "enum", "const", "properties", "required", "additionalProperties", "items",
                       "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
                       "exclusiveMinimum", "exclusiveMaximum", "allOf", "anyOf", "$ref"})


class _Unsupported(Exception):
    """The schema uses something the predicate does not model: jsonschema checks every row."""


def certainly_valid(schema: Any) -> Check | None:
    """A predicate that is True only for instances Draft7Validator(schema) finds no error in; None
    when the schema uses a keyword this module does not model (then use jsonschema for every row)."""
    try:
        return _Compiler(schema).compile(schema)
    except (_Unsupported, RecursionError):
        return None


class _Compiler:
    """Compiles one schema; `$ref`s resolve as JSON pointers inside the root schema."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.resolving: set[str] = set()  # refs being compiled: a recursive schema is unsupported

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return _always
        if not isinstance(schema, dict):
            raise _Unsupported  # `false` and malformed schemas: jsonschema says what happens
        keys = {k for k in schema if k not in _ANNOTATIONS and not (isinstance(k, str) and k.startswith("x-"))}
        if not keys <= _KEYWORDS:
            raise _Unsupported
        if "$ref" in keys:
            if keys != {"$ref"}:
                raise _Unsupported  # Draft 7 ignores a $ref's siblings: not worth modelling
            return self._ref(schema["$ref"])
        checks = [c for c in (self._type(schema), self._choices(schema), self._numbers(schema),
                              self._lengths(schema), self._object(schema), self._array(schema),
                              self._combined(schema)) if c is not None]
        return _all_of(checks)

    def _ref(self, ref: Any) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#/") or "%" in ref or ref in self.resolving:
            raise _Unsupported  # percent-escapes are jsonschema's to decode
        target = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise _Unsupported  # unresolvable: jsonschema raises, as it did before
            target = target[part]
        self.resolving.add(ref)
        try:
            return self.compile(target)
        finally:
            self.resolving.discard(ref)

    def _type(self, schema: dict[str, Any]) -> Check | None:
        if "type" not in schema:
            return None
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
            raise _Unsupported
        allowed = tuple({t for n in names for t in _TYPES[n]})
        return lambda v: type(v) in allowed

    def _choices(self, schema: dict[str, Any]) -> Check | None:
        members = list(schema["enum"]) if "enum" in schema else None
        if "const" in schema:
            members = [schema["const"]] if members is None else members
            if "enum" in schema:
                raise _Unsupported
        if members is None:
            return None
        if not all(type(m) in _PLAIN and not isinstance(m, (dict, list)) and m == m for m in members):
            raise _Unsupported  # containers and NaN: left to jsonschema's own equality
        # Same type and equal: equal for jsonschema too (it tells True from 1, and 1 from 1.0 not).
        pairs = frozenset((type(m), m) for m in members)
        return lambda v: type(v) in _PLAIN and not isinstance(v, (dict, list)) and (type(v), v) in pairs

    def _numbers(self, schema: dict[str, Any]) -> Check | None:
        bounds = [(k, schema[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
                  if k in schema]
        if not bounds:
            return None
        if not all(type(b) in _NUMBERS for _, b in bounds):
            raise _Unsupported
        low = max((b for k, b in bounds if k == "minimum"), default=None)
        high = min((b for k, b in bounds if k == "maximum"), default=None)
        xlow = schema.get("exclusiveMinimum")
        xhigh = schema.get("exclusiveMaximum")

        def within(v: Any) -> bool:
            if type(v) not in _NUMBERS:
                return type(v) in _PLAIN  # bounds apply to numbers only (not to booleans either)
            return ((low is None or v >= low) and (high is None or v <= high)
                    and (xlow is None or v > xlow) and (xhigh is None or v < xhigh))
        return within

    def _lengths(self, schema: dict[str, Any]) -> Check | None:
        return _sized(schema, "minLength", "maxLength", str)

    def _object(self, schema: dict[str, Any]) -> Check | None:
        if not any(k in schema for k in ("properties", "required", "additionalProperties")):
            return None
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, dict) or not isinstance(required, list) or \
                not all(isinstance(r, str) for r in required):
            raise _Unsupported
        checks = {k: self.compile(s) for k, s in props.items()}
        closed = extra is False
        extra_check = None if extra is True or closed else self.compile(extra)
        if not checks and not required and not closed and extra_check is None:
            return None  # any mapping (the echo model's input): nothing to check per key
        return _object_check(checks, tuple(required), closed, extra_check)

    def _array(self, schema: dict[str, Any]) -> Check | None:
        sized = _sized(schema, "minItems", "maxItems", list)
        if "items" not in schema:
            return sized
        if not isinstance(schema["items"], dict) and schema["items"] is not True:
            raise _Unsupported  # tuple-form items
        each = self.compile(schema["items"])

        def items_ok(v: Any) -> bool:
            return type(v) is not list or all(each(x) for x in v)
        return items_ok if sized is None else _all_of([sized, items_ok])

    def _combined(self, schema: dict[str, Any]) -> Check | None:
        parts: list[Check] = []
        for key in ("allOf", "anyOf"):
            if key not in schema:
                continue
            subs = schema[key]
            if not isinstance(subs, list) or not subs:
                raise _Unsupported
            checks = [self.compile(s) for s in subs]
            parts.append(_all_of(checks) if key == "allOf" else _any_of(checks))
        return _all_of(parts) if parts else None


def _always(_: Any) -> bool:
    return True


def _all_of(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


def _any_of(checks: list[Check]) -> Check:
    return lambda v: any(c(v) for c in checks)


def _sized(schema: dict[str, Any], low_key: str, high_key: str, kind: type[str] | type[list[Any]]) -> Check | None:
    """minLength/maxLength (strings) or minItems/maxItems (lists): len() counts what jsonschema counts."""
    if low_key not in schema and high_key not in schema:
        return None
    low, high = schema.get(low_key, 0), schema.get(high_key)
    if type(low) is not int or (high is not None and type(high) is not int):
        raise _Unsupported

    def sized(v: Any) -> bool:
        if type(v) is not kind:
            return type(v) in _PLAIN  # the bounds apply to `kind` only
        n = len(v)  # a str or a list, by the test above
        return n >= low and (high is None or n <= high)
    return sized


def _object_check(props: dict[str, Check], required: tuple[str, ...], closed: bool,
                  extra: Check | None) -> Check:
    """properties, required and additionalProperties (false, a schema, or true) of a mapping."""

    def object_ok(v: Any) -> bool:
        if type(v) is not dict:
            return type(v) in _PLAIN  # these keywords apply to mappings only
        for k in required:
            if k not in v:
                return False
        for k, x in v.items():
            check = props.get(k)
            if check is not None:
                if not check(x):
                    return False
            elif closed or (extra is not None and not extra(x)):
                return False
        return True
    return object_ok


__all__ = ["certainly_valid"]
