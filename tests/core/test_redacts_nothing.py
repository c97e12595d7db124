"""`redacts_nothing`: the fast check that lets `outputs` skip redacting values with nothing to hide.
It may say "run redact" needlessly, never "nothing to hide" when redact would change the value."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.redact import REDACTED, SecretSet, redact, redact_unless_clear, redacts_nothing

# Pieces that make keys and strings the redactor reacts to, or nearly: secret-looking names
# (including a Kelvin sign, which matches "k" case-insensitively), tokens, headers, URLs with
# credentials, a known secret value, JSON's escaped characters.
_PIECES = ["tok", "en", "to", "ken", "\u212aey", "KEY", "pass", "word", "auth", "or", "max_", "s", "r8_",
           "a" * 20, "Bearer ", "Token ", "abcdefgh12", "https://", "u:pw@h", "?sig=", "x", "\"", "\\",
           "\n", "é", "hunter2-secret", "4242424242"]
_text = st.lists(st.sampled_from(_PIECES), max_size=5).map("".join)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([4242424242, 0.5, -0.0]), _text)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(_text, inner, max_size=3)), max_leaves=8)
_SECRETS = [SecretSet(), SecretSet(["hunter2-secret", "4242424242"])]


@settings(max_examples=400, deadline=None)
@given(value=_values, which=st.sampled_from([0, 1]))
def test_nothing_to_hide_means_redact_changes_nothing(value: Any, which: int) -> None:
    secrets = _SECRETS[which]
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if redacts_nothing(text, secrets):
        assert redact(value, secrets=secrets) == value


def test_what_it_flags() -> None:
    secrets = SecretSet(["hunter2-secret"])
    assert redacts_nothing(json.dumps({"output": {"prompt": "p", "seed": 1}}), secrets)
    for value in ({"api_key": "x"}, {"a": "r8_" + "a" * 30}, {"a": "Bearer abcdefgh12"}, {"u": "https://u:p@h"},
                  {"a": ["my hunter2-secret"]}, {"\u212aey": 1}):
        text = json.dumps(value, ensure_ascii=False)
        assert not redacts_nothing(text, secrets)
        assert REDACTED in json.dumps(redact(value, secrets=secrets))  # and redact does hide something


@settings(max_examples=400, deadline=None)
@given(value=_values, which=st.sampled_from([0, 1]))
def test_redact_unless_clear_equals_redact(value: Any, which: int) -> None:
    """What apply records of an item's output and writes as its row's input: `redact`'s result,
    or the value itself when that result would equal it."""
    secrets = _SECRETS[which]
    assert redact_unless_clear(value, secrets) == redact(value, secrets=secrets)
    assert redact_unless_clear(value, secrets, whole_values=True) == redact(value, secrets=secrets, whole_values=True)


def test_redact_unless_clear_hands_back_a_value_with_nothing_to_hide_uncopied() -> None:
    secrets = SecretSet(["hunter2-secret"])
    plain = {"output": {"prompt": "p", "seed": 1}}
    assert redact_unless_clear(plain, secrets) is plain
    hiding = {"prompt": "say hunter2-secret", "api_key": "x"}
    assert redact_unless_clear(hiding, secrets) == {"prompt": f"say {REDACTED}", "api_key": REDACTED}
    assert redact_unless_clear({"when": object()}, secrets) is not None  # not JSON: redact walks it
