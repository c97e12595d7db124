"""Secrets never reach outputs: secret-named keys, spec.sensitive, known tokens in free text."""
from __future__ import annotations

import json
from typing import Any

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


# --- secrets by value ----------------------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402
from urllib.parse import quote, quote_plus  # noqa: E402

from jobrunner.redact import SecretRegistry, SecretSet, scrub_data, url_secrets  # noqa: E402


def test_a_value_is_found_raw_json_escaped_and_url_encoded() -> None:
    secret = 'pa"ss/w+rd \\ 42'
    found = SecretSet([secret])
    for text in (secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1], quote(secret, safe=""),
                 quote_plus(secret), repr(secret)[1:-1]):
        assert found.scrub(f"<{text}>") == f"<{REDACTED}>", text
    assert found.scrub(json.dumps({"out": f"echo {secret}"})) == json.dumps({"out": f"echo {REDACTED}"})


def test_short_values_are_not_searched_for_and_redacted_itself_never_grows() -> None:
    found = SecretSet(["abc", "12345", "sensitive", "(sensitive)"])
    assert not found
    assert found.scrub("abc 12345 sensitive (sensitive)") == "abc 12345 sensitive (sensitive)"
    registry = SecretRegistry()
    registry.add_all(["abc", True, 12, None, {"x": "long-enough-value"}])
    assert not registry.snapshot().values - SecretSet(os_values()).values


def os_values() -> list[str]:
    import os

    from jobrunner.redact import SECRET_ENV_VARS

    return [os.environ[v] for v in SECRET_ENV_VARS if os.environ.get(v)]


def test_webhook_url_secrets_are_chosen_by_name_or_shape() -> None:
    url = ("https://bot:hunter2hunter2@hooks.example.com/services/T0ABCDEF1234567890xyz/hook"
           "?code=c0de-value&sig=abc123def456&event=completed&team=nlp&nonce=k9k9k9k9k9")
    found = set(url_secrets(url))
    assert {"hunter2hunter2", "T0ABCDEF1234567890xyz", "c0de-value", "abc123def456", "k9k9k9k9k9"} <= found
    assert not found & {"completed", "nlp", "services", "hook", "hooks.example.com", "bot"}
    assert url_secrets("https://ghp_0123456789abcdef@example.com/x") == ["ghp_0123456789abcdef"]


def test_free_text_urls_lose_passwords_and_signed_query_values() -> None:
    text = "POST https://u:pw-123456@h.example.com/x?sig=zzz&code=yyy&page=2 failed"
    assert scrub_text(text, secrets=[]) == (
        f"POST https://u:{REDACTED}@h.example.com/x?sig={REDACTED}&code={REDACTED}&page=2 failed")


def test_registry_takes_sensitive_and_secret_named_inputs_and_webhooks_from_jobs() -> None:
    job = SimpleNamespace(
        request={"input": {"prompt": "hi there", "email": "ann@example.org", "api_key": "key-material-1",
                           "nested": {"auth": {"user": "user-name-1", "pin": 123456}}},
                 "webhook": "https://example.com/h?code=webhook-code-1"},
        sensitive_paths=("email",))
    registry = SecretRegistry()
    registry.add_jobs([job])
    values = registry.snapshot()
    assert {"ann@example.org", "key-material-1", "user-name-1", "123456", "webhook-code-1"} <= set(values)
    assert "hi there" not in values
    out = redact({"output": {"echo": "mail ann@example.org", "pin": 123456, "prompt": "hi there"}}, secrets=values)
    assert out == {"output": {"echo": f"mail {REDACTED}", "pin": REDACTED, "prompt": "hi there"}}
    registry.clear()
    assert "ann@example.org" not in registry.snapshot()


def test_whole_values_keep_the_shape_lookups_rely_on() -> None:
    found = SecretSet(["secret-value-9"])
    value = {"prompt": "use secret-value-9 now", "n": 3, "kept": "plain"}
    assert redact(value, secrets=found, whole_values=True) == {"prompt": REDACTED, "n": 3, "kept": "plain"}
    assert redact(value, secrets=found) == {"prompt": f"use {REDACTED} now", "n": 3, "kept": "plain"}


def test_scrub_data_returns_the_same_object_when_nothing_is_secret() -> None:
    found = SecretSet(["secret-value-9"])
    clean = {"a": ["x", {"b": 1}], "c": "text"}
    assert scrub_data(clean, secrets=found) is clean
    dirty: dict[str, Any] = {"a": ["x", {"b": "secret-value-9"}], "c": "text"}
    out = scrub_data(dirty, secrets=found)
    assert out == {"a": ["x", {"b": REDACTED}], "c": "text"} and dirty["a"][1]["b"] == "secret-value-9"


@pytest.mark.slow  # a timing check on a large input
def test_ten_thousand_secrets_scrub_quickly() -> None:
    import time

    values = [f"customer-{i:05d}@example.org" for i in range(10_000)]
    started = time.perf_counter()
    found = SecretSet(values)
    text = "row output: " + "lorem ipsum " * 20 + values[1234]
    for _ in range(1000):
        scrubbed = found.scrub(text)
    assert scrubbed.endswith(REDACTED) and "lorem" in scrubbed
    assert time.perf_counter() - started < 20  # measured ~3 s on a busy 2-core machine


def test_a_raw_spec_registers_its_secret_values_before_validation() -> None:
    registry = SecretRegistry()
    registry.add_spec({
        "provider": "emissary", "description": "plain words here",
        "parameters": {"wandb_key": "wandb-secret-77", "epochs": 3, "run_label": "label-secret-77"},
        "sensitive": ["run_label", "email"],
        "input_defaults": {"api_key": "default-key-77"},
        "inputs": [{"key": "a", "email": "row-mail-77@example.org", "prompt": "hello world"}, "not a row"],
        "webhook": "https://h.example.com/x?code=hook-code-77",
    })
    values = set(registry.snapshot())
    assert {"wandb-secret-77", "label-secret-77", "default-key-77", "row-mail-77@example.org", "hook-code-77"} <= values
    assert not values & {"plain words here", "hello world", "emissary"}


def test_a_rows_key_names_its_item_and_is_never_registered_as_a_secret() -> None:
    registry = SecretRegistry()
    registry.add_spec({"inputs": [{"key": "password-reset", "prompt": "How do I reset my password?",
                                   "api_key": "row-key-secret-77"}]})
    values = set(registry.snapshot())
    assert "row-key-secret-77" in values
    assert "password-reset" not in values


def test_flat_rows_of_one_shape_are_judged_once_and_still_give_up_their_secrets() -> None:
    """Rows sharing their keys are decided once per shape; a flat row under a secret-named or
    listed key, or any row with a nested value, is still walked (the fast path finds nothing only
    where the walk would find nothing)."""
    def row(i: int, **extra: object) -> SimpleNamespace:
        return SimpleNamespace(request={"version": "v1", "input": {"prompt": f"plain prompt {i}", **extra}},
                               sensitive_paths=())

    registry = SecretRegistry()
    registry.add_jobs([row(1), row(2), row(3, hf_token="token-value-3"), row(4),
                       row(5, meta={"password": "pw-value-5"})])
    listed = SimpleNamespace(
        request={"version": "v1", "input": {"prompt": "plain prompt 6", "email": "e6@example.org"}},
        sensitive_paths=("input.email",))
    registry.add_jobs([listed])
    values = set(registry.snapshot())
    assert {"token-value-3", "pw-value-5", "e6@example.org"} <= values
    assert not any(v.startswith("plain prompt") for v in values)


def test_a_run_of_plain_rows_is_passed_over_whole_and_secrets_are_still_found() -> None:
    """A big batch's rows are judged a few thousand at a time: a run of plain rows of one key
    shape registers nothing, but a secret-named key in one row, a key all rows share and that is
    secret-named or listed, a nested value, a webhook, a list, or rows of several shapes still give
    up their secrets; and a known secret in a plain row is still scrubbed by value."""
    def row(i: int, sensitive: tuple[str, ...] = (), **extra: object) -> SimpleNamespace:
        return SimpleNamespace(request={"version": "v1", "input": {"prompt": f"plain prompt {i}", "seed": i,
                                                                   "t": 0.5, "on": True, "x": None, **extra}},
                               sensitive_paths=sensitive)

    registry = SecretRegistry()
    registry.add_jobs([row(i) for i in range(10_000)])
    assert set(registry.snapshot()) == set()

    registry.add_jobs([row(i) for i in range(5000)] + [row(5000, hf_token="token-value-5000")])
    registry.add_jobs([row(i, api_key=f"shared-key-{i:04d}") for i in range(3)])
    registry.add_jobs([row(i, ("input.prompt",)) for i in range(100, 103)])
    registry.add_jobs([row(i) for i in range(3)] + [row(3, meta={"password": "nested-pw-3"})])
    registry.add_jobs([row(i) for i in range(3)] + [row(3, tags=["a", {"secret": "in-a-list-3"}])])
    hook = SimpleNamespace(request={"input": {"prompt": "plain prompt 9"},
                                    "webhook": "https://h.example/x?token=hook-secret-9"}, sensitive_paths=())
    registry.add_jobs([row(1), hook])
    body = SimpleNamespace(request={"input": {"prompt": "plain prompt 8"}, "parameters": {"api_key": "param-secret-8"}},
                           sensitive_paths=())
    registry.add_jobs([row(1), body])
    registry.add_jobs([body, SimpleNamespace(request={"input": {"prompt": "plain prompt 7"},
                                                      "parameters": {"api_key": "param-secret-7"}},
                                             sensitive_paths=())])
    values = set(registry.snapshot())
    assert {"token-value-5000", "shared-key-0000", "shared-key-0002", "plain prompt 100", "plain prompt 102",
            "nested-pw-3", "in-a-list-3", "hook-secret-9", "param-secret-8",
            "param-secret-7"} <= values
    assert "plain prompt 1" not in values and "plain prompt 4999" not in values

    registry.add("r8_" + "k" * 30)  # e.g. a token the environment or another manifest holds
    registry.add_jobs([row(i, echo="r8_" + "k" * 30) for i in range(3)])
    assert registry.snapshot().scrub(json.dumps(row(0, echo="r8_" + "k" * 30).request)).count(REDACTED) == 1


def test_an_input_field_named_input_listed_as_sensitive_is_registered_from_a_run_of_rows() -> None:
    """A run of plain rows is judged on its keys as a whole: an input field that is itself named
    `input` (listed as `input.input`) must count as a key there, as it does row by row."""
    rows = [SimpleNamespace(request={"version": "v1", "input": {"prompt": "p", "input": f"hidden-value-{i}"}},
                            sensitive_paths=("input.input",)) for i in range(3)]
    registry = SecretRegistry()
    registry.add_jobs(rows)
    assert {"hidden-value-0", "hidden-value-1", "hidden-value-2"} <= set(registry.snapshot())
