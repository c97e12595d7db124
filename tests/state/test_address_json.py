"""An address is encoded once per save: its own JSON text is checked for known secrets, and only an
address whose text may hold one is scrubbed and encoded again. The text is byte for byte what
encoding the scrubbed `to_json()` gives, with and without secrets in it."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from jobrunner import redact
from jobrunner.redact import SecretSet
from jobrunner.state.model import AddressState, Attempt, Intent
from jobrunner.state.serialize import address_json

SECRET = "hunter2-secret-value"


def _reference(st: AddressState) -> str:
    """What a save wrote before: the scrubbed dict, encoded."""
    return json.dumps(st.to_json(), sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _state(output: Any, error: str | None = None, inputs: Any = None, intent_inputs: Any = None) -> AddressState:
    return AddressState(
        address="PredictionBatch/b[k]", kind="PredictionBatch", job_kind="prediction", provider="local",
        file="b.yaml", fingerprint="f" * 64, remote_id="r1", status="succeeded", attempts=1,
        outputs={"output": output, "metrics": {"predict_time": 0.5}}, error=error, inputs=inputs,
        history=[Attempt("r1", "f" * 64, 1, "2026-01-01T00:00:00Z", "succeeded")],
        intent=Intent("f" * 64, 1, "2026-01-01T00:00:00Z", "d" * 64, intent_inputs) if intent_inputs else None,
    )


@pytest.mark.parametrize("secrets", [[SECRET], ['quote"d-secret-value'], ["ünïcode-secret-value"], []])
def test_a_secret_anywhere_is_scrubbed_as_before(monkeypatch, secrets: list[str]) -> None:
    monkeypatch.setattr(redact, "known_secrets", lambda: SecretSet(secrets))
    value = secrets[0] if secrets else "nothing"
    cases = [
        _state({"text": f"echo {value}"}),
        _state(["a", value, 3], error=f"auth failed for {value}"),
        _state("plain", inputs={"input": {"prompt": value}}),
        _state("plain", intent_inputs={"input": {"p": f"x{value}y"}}),
        _state({"text": "nothing to hide", "n": 12}),
    ]
    for st in cases:
        text = address_json(st)
        assert text == _reference(st)
        if secrets:
            assert value not in text


def test_a_plain_list_of_secrets_is_checked_too(monkeypatch) -> None:
    monkeypatch.setattr(redact, "known_secrets", lambda: [SECRET])
    st = _state({"text": SECRET})
    assert address_json(st) == _reference(st) and SECRET not in address_json(st)


_text = hs.text(hs.characters(max_codepoint=0xD7FF), max_size=12)  # below the surrogates
_json = hs.recursive(hs.none() | hs.booleans() | hs.integers(-10**6, 10**6) | _text,
                     lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(output=_json, error=hs.none() | _text,
       secret=hs.sampled_from(["s3cret-val", "12345678", "a,b:c]d-x", "é-secret-x"]))
def test_encoded_once_equals_scrubbed_then_encoded(output: Any, error: str | None, secret: str) -> None:
    previous = redact.known_secrets
    setattr(redact, "known_secrets", lambda: SecretSet([secret]))  # noqa: B010 (no fixture inside @given)
    try:
        for value in (output, [output, secret], {"k": f"{secret}{error or ''}"}):
            st = _state(value, error=error)
            assert address_json(st) == _reference(st)
    finally:
        setattr(redact, "known_secrets", previous)  # noqa: B010
