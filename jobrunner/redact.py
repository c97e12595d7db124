"""Keep secrets out of everything jobrunner prints or stores.

Two tools, used by every renderer, the state writer and the error path:

- `redact(value, sensitive)` copies JSON-like data, replacing the values of keys that are named like
  secrets (`*token*`, `*key*`, `*password*`, `*secret*`, ...) or listed in a manifest's
  `spec.sensitive`, with `"(sensitive)"`. Count-like parameters that merely contain such a word
  (`max_tokens`, `max_new_tokens`, `tokenizer`, `keyword`) are not secrets and stay visible, so plans
  of language-model jobs still show the diffs users care about.
- `scrub_text(text)` removes known credential values (the environment's provider tokens, the local
  platform token, anything passed to `register_secret`), bearer-token-looking strings and the values
  of secret-named URL query parameters (`?token=...`) from free text such as provider error
  details, log lines and webhook URLs.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Iterable

REDACTED = "(sensitive)"

# Environment variables whose values are credentials (the official clients' names).
SECRET_ENV_VARS = (
    "REPLICATE_API_TOKEN",
    "EMISSARY_CLIENT_API_KEY",
    "JOBRUNNER_LOCAL_TOKEN",
)

_SECRET_NAME = re.compile(r"token|key|passw(or)?d|pwd|secret|credential|auth", re.IGNORECASE)
# Word parts that contain a secret-like word but name counts or vocabulary, not credentials; they
# are removed from a key before it is tested (so `max_tokens` stays visible, `hf_token` does not).
_BENIGN_PARTS = re.compile(
    r"tokens?[_-]?(len|length|count|limit|budget|ids?)|tokens|tokeniz[a-z]*|keywords?|keyframes?|author(?!i)[a-z]*",
    re.IGNORECASE,
)
# A value that is certainly a credential whatever its key: Replicate tokens, bearer headers.
_TOKEN_IN_TEXT = re.compile(r"\b(r8_[A-Za-z0-9]{20,})\b")
_AUTH_HEADER = re.compile(r"\b(Bearer|Token)\s+[A-Za-z0-9_\-.=+/]{8,}")

# `name=value` in a URL query string; values of secret-looking names are redacted (webhook URLs
# often carry a token).
_QUERY_PARAM = re.compile(r"([?&])([^=&#\s]+)=([^&#\s]*)")

# Values shorter than this are never scrubbed from text: replacing "abc" everywhere would mangle
# messages and protects nothing.
_MIN_SECRET_LEN = 6
MIN_SECRET_LEN = _MIN_SECRET_LEN

_registered: set[str] = set()


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Does a key look like it holds a credential? (`api_key`, `hf_token`, `db_password`, ...)"""
    if not _SECRET_NAME.search(name):
        return False
    return bool(_SECRET_NAME.search(_BENIGN_PARTS.sub("", name)))


def _split_sensitive(sensitive: Iterable[str]) -> tuple[set[str], set[tuple[str, ...]]]:
    names: set[str] = set()
    paths: set[tuple[str, ...]] = set()
    for item in sensitive:
        parts = tuple(p for p in str(item).split(".") if p)
        if parts and parts[0] in ("input", "spec", "$"):
            parts = parts[1:] if parts[0] != "spec" or len(parts) == 1 else parts[1:]
        if not parts:
            continue
        if len(parts) == 1:
            names.add(parts[0].lower())
        else:
            paths.add(parts)
    return names, paths


def redact(value: Any, sensitive: Iterable[str] = (), *, secrets: list[str] | None = None) -> Any:
    """A copy of `value` with secret-looking and `sensitive` keys' values replaced by "(sensitive)".

    `sensitive` entries are key names (matched at any depth, case-insensitively) or dotted paths
    from the top of `value` (`input.` prefixes are ignored, so `input.auth.user` and `auth.user` are
    the same). Strings anywhere are also passed through `scrub_text`. Callers redacting many values
    in a row may pass `secrets=known_secrets()` once instead of reading the environment each time.
    """
    names, paths = _split_sensitive(sensitive) if sensitive else (set(), set())
    return _redact(value, names, paths, (), known_secrets() if secrets is None else secrets)


def _redact(value: Any, names: set[str], paths: set[tuple[str, ...]], here: tuple[str, ...], secrets: list[str]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            path = here + (key,)
            if key.lower() in names or path in paths or is_secret_name(key):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, names, paths, path, secrets)
        return out
    if isinstance(value, list):
        return [_redact(v, names, paths, here, secrets) for v in value]
    if isinstance(value, str):
        return _scrub(value, secrets)
    return value


def register_secret(value: str | None) -> None:
    """Add a credential value (e.g. the local platform token) to what `scrub_text` removes."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


def known_secrets() -> list[str]:
    """Credential values to scrub: the environment's provider tokens and registered secrets."""
    found = set(_registered)
    for var in SECRET_ENV_VARS:
        val = os.environ.get(var)
        if val and len(val) >= _MIN_SECRET_LEN:
            found.add(val)
    # Longest first so a token that contains another is removed whole.
    return sorted(found, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "r8_" in text:
        text = _TOKEN_IN_TEXT.sub(REDACTED, text)
    if "Bearer" in text or "Token" in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text and "=" in text:
        text = _QUERY_PARAM.sub(
            lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}" if is_secret_name(m.group(2)) else m.group(0), text
        )
    return text


def hidden_values(recorded: Any, actual: Any) -> list[str]:
    """The values in `actual` at the places `recorded` (its redacted copy, as kept in state) hides.

    Lets free text that may quote a job's input (a model's logs) be scrubbed of that job's secret
    inputs, with `scrub_text(text, secrets=known_secrets() + hidden_values(...))`.
    """
    found: list[str] = []
    if recorded == REDACTED and actual is not None and not isinstance(actual, (dict, list)):
        text = str(actual)
        if len(text) >= 4:  # scrubbing "1" or "no" from logs would hide everything and protect nothing
            found.append(text)
    elif isinstance(recorded, dict) and isinstance(actual, dict):
        for k, v in recorded.items():
            found += hidden_values(v, actual.get(k))
    elif isinstance(recorded, list) and isinstance(actual, list):
        for a, b in zip(recorded, actual):
            found += hidden_values(a, b)
    return found


def scrub_text(text: str, *, secrets: list[str] | None = None) -> str:
    """`text` with every known credential value and bearer/`r8_` token replaced by "(sensitive)"."""
    return _scrub(text, known_secrets() if secrets is None else secrets)


__all__ = ["MIN_SECRET_LEN", "REDACTED", "SECRET_ENV_VARS", "hidden_values", "is_secret_name", "known_secrets", "redact", "register_secret", "scrub_text"]
