"""The shortcuts of redaction's hot paths give what the long way gives.

`scrub_data` runs on every address of every state save and on each output row: it first asks
the secret set whether its JSON text holds any secret (`SecretSet.absent_from`) and walks the
value only then. `known_secrets` runs several times per batch item: it reads the credential
variables straight from `os.environ`'s own mapping. Both are checked here against the walk and
against the environment as tests change it.
"""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.redact import SECRETS, SecretSet, _scrub_deep, known_secrets, scrub_data

SECRET_VALUES = ["tok-0123456789abcdef", 'quo"te-secret-1234', "back\\slash-secret-99", "ünïcödé-secret-42",
                 "12345678901234"]

_pieces = st.sampled_from(["", "plain text ", "é", '"', "\\", "\n", *SECRET_VALUES])
_strings = st.lists(_pieces, max_size=4).map("".join)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.just(12345678901234), st.floats(allow_nan=False),
                     _strings)
_data = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_strings, inner, max_size=3)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(data=_data, chosen=st.lists(st.sampled_from(SECRET_VALUES), min_size=1, max_size=3), whole=st.booleans())
def test_scrub_data_equals_the_walk(data: Any, chosen: list[str], whole: bool) -> None:
    secrets = SecretSet(chosen)
    walked = _scrub_deep(data, secrets, whole)
    got = scrub_data(data, secrets=secrets, whole_values=whole)
    assert got == walked
    if walked is data:
        assert got is data  # nothing changed: the value itself, not a copy


def test_absent_from_is_only_sure_for_plain_values_and_json() -> None:
    plain = SecretSet(["tok-0123456789abcdef"])
    assert plain.absent_from({"a": ["x", 1, None], "b": {"c": "y"}})
    assert not plain.absent_from({"a": "..tok-0123456789abcdef.."})
    assert not plain.absent_from({"a": {1, 2}})  # not JSON: unsure, the caller walks it
    assert not SecretSet(['quo"te-secret-1234']).absent_from({"a": "nothing here"})  # JSON escapes it


def test_known_secrets_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    before = known_secrets()
    assert known_secrets() is before  # nothing changed: the same set
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_envtoken0123456789")
    during = known_secrets()
    assert "r8_envtoken0123456789" in during and during is not before
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_othertoken987654321")
    assert "r8_othertoken987654321" in known_secrets() and "r8_envtoken0123456789" not in known_secrets()
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    assert "r8_othertoken987654321" not in known_secrets()
    assert SECRETS.snapshot() is known_secrets()
