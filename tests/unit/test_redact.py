"""Secrets never reach outputs: secret-named keys, spec.sensitive, known tokens in free text."""
from __future__ import annotations

import pytest

from jobrunner.redact import REDACTED, is_secret_name, redact, register_secret, scrub_text


@pytest.mark.parametrize("name", ["api_key", "apiKey", "HF_TOKEN", "access_token", "db_password", "passwd",
                                  "client_secret", "secretKey", "credentials", "authorization", "key"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["prompt", "max_tokens", "max_new_tokens", "stop_tokens", "tokenizer",
                                  "keywords", "author", "order", "seed", "token_count"])
def test_count_like_names_stay_visible(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_nested_and_listed_keys_without_touching_the_original() -> None:
    value = {
        "prompt": "hi",
        "max_tokens": 80,
        "hf_token": "hf_abcdef123456",
        "db": {"Password": "p4ss", "host": "db.internal"},
        "items": [{"secret": 1, "n": 2}],
        "customer": {"email": "a@b.c"},
    }
    out = redact(value, ["email", "input.prompt"])
    assert out == {
        "prompt": REDACTED,
        "max_tokens": 80,
        "hf_token": REDACTED,
        "db": {"Password": REDACTED, "host": "db.internal"},
        "items": [{"secret": REDACTED, "n": 2}],
        "customer": {"email": REDACTED},
    }
    assert value["hf_token"] == "hf_abcdef123456"  # a copy, not in place


def test_dotted_sensitive_path_only_matches_that_path() -> None:
    out = redact({"a": {"user": "x"}, "b": {"user": "y"}}, ["a.user"])
    assert out == {"a": {"user": REDACTED}, "b": {"user": "y"}}


def test_environment_tokens_are_scrubbed_from_text_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_Zq1w2e3r4t5y6u7i8o9p0AbCdEf")
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", "em-very-secret-value")
    text = "401 for token r8_Zq1w2e3r4t5y6u7i8o9p0AbCdEf and em-very-secret-value"
    assert scrub_text(text) == f"401 for token {REDACTED} and {REDACTED}"
    assert redact({"note": "key em-very-secret-value"}) == {"note": f"key {REDACTED}"}


def test_bearer_headers_and_unknown_replicate_tokens() -> None:
    assert scrub_text("Authorization: Bearer abc.def-ghi_jkl") == f"Authorization: Bearer {REDACTED}"
    assert scrub_text("used r8_AAAAAAAAAAAAAAAAAAAAAAAAAAAA here") == f"used {REDACTED} here"


def test_registered_secret_and_short_values(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret("local-platform-token-123")
    assert scrub_text("token=local-platform-token-123;") == f"token={REDACTED};"
    monkeypatch.setenv("REPLICATE_API_TOKEN", "abc")  # too short to scrub safely
    assert scrub_text("abc def") == "abc def"


def test_secret_query_parameters_in_urls() -> None:
    url = "https://example.com/hook?token=s3cr3t&team=nlp"
    assert scrub_text(url) == f"https://example.com/hook?token={REDACTED}&team=nlp"
    assert redact({"webhook": url})["webhook"] == f"https://example.com/hook?token={REDACTED}&team=nlp"
