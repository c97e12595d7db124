"""Keep secrets out of everything jobrunner prints or stores: by key and by value.

By key: `redact(value, sensitive)` copies JSON-like data, replacing the values of keys that are named
like secrets (`*token*`, `*key*`, `*password*`, `*secret*`, ...) or listed in a manifest's
`spec.sensitive`, with `"(sensitive)"`. Count-like parameters that merely contain such a word
(`max_tokens`, `max_new_tokens`, `tokenizer`, `keyword`) are not secrets and stay visible, so plans of
language-model jobs still show the diffs users care about.

By value: a key rule cannot see a secret that comes back somewhere else: a model that echoes its
input, a job error or a provider's 422 detail that quotes it, a webhook URL carrying `?code=...`.
So every command keeps one registry of the secret values it knows (`SECRETS`): the environment's
provider tokens, the local platform token, and, as soon as the manifests are read (`add_spec` during
validation, `register_jobs` after expansion), the values of sensitive and secret-named inputs and the
secret parts of webhook URLs (query values that are named or shaped like secrets, userinfo,
token-shaped path segments), and the contents of `{$file: ...}` inputs that are sensitive or
secret-named (a key file: `register_jobs` with the workspace root reads them). `scrub_text` and `redact`
replace every occurrence of those values, also JSON-escaped or URL-encoded, with "(sensitive)".
They are applied at the boundaries where values leave the process: state serialization
(`AddressState.to_json`), batch output files, saved plans, every renderer, and the CLI's standard
output and error streams (`jobrunner.render.guard`).

Values shorter than `MIN_SECRET_LEN` are never searched for in text (scrubbing "abc" everywhere would
mangle messages and protect nothing); they are still hidden wherever their key is known.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

REDACTED = "(sensitive)"

# Environment variables whose values are credentials (the official clients' names).
SECRET_ENV_VARS = (
    "REPLICATE_API_TOKEN",
    "EMISSARY_CLIENT_API_KEY",
    "JOBRUNNER_LOCAL_TOKEN",
)
# Environment variables holding a URL whose password is a credential (the state backend).
SECRET_URL_ENV_VARS = ("JOBRUNNER_STATE_URL",)

_SECRET_NAME = re.compile(r"token|key|passw(or)?d|pwd|secret|credential|auth", re.IGNORECASE)
# Word parts that contain a secret-like word but name counts or vocabulary, not credentials; they
# are removed from a key before it is tested (so `max_tokens` stays visible, `hf_token` does not).
_BENIGN_PARTS = re.compile(
    r"tokens?[_-]?(len|length|count|limit|budget|ids?)|tokens|tokeniz[a-z]*|keywords?|keyframes?|author(?!i)[a-z]*",
    re.IGNORECASE,
)
# URL query parameters that carry a credential although not named like one: Azure Functions'
# `code`, signed URLs' `sig`/`signature` (S3, GCS, Azure SAS), HMACs.
_URL_SECRET_PARAM = re.compile(r"^(code|sig|signature|hmac|x-amz-signature|x-goog-signature)$", re.IGNORECASE)
# A value that is certainly a credential whatever its key: Replicate tokens, bearer headers.
_TOKEN_IN_TEXT = re.compile(r"\b(r8_[A-Za-z0-9]{20,})\b")
_AUTH_HEADER = re.compile(r"\b(Bearer|Token)\s+[A-Za-z0-9_\-.=+/]{8,}")

# `name=value` in a URL query string; values of secret-looking names are redacted (webhook URLs
# often carry a token).
_QUERY_PARAM = re.compile(r"([?&])([^=&#\s]+)=([^&#\s]*)")
# `scheme://user:password@host`: the password goes.
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)([^@\s/]+)(@)")
# A URL path segment or query value shaped like a generated credential (long, letters and digits).
_TOKEN_SHAPED = re.compile(r"^(?=.*[A-Za-z])(?=.*[0-9])[A-Za-z0-9_\-.~%+=]{8,}$")
_LONG_SEGMENT = 16

# Values shorter than this are never scrubbed from text: replacing "abc" everywhere would mangle
# messages and protects nothing.
_MIN_SECRET_LEN = 6
MIN_SECRET_LEN = _MIN_SECRET_LEN
# Values up to this long go into one compiled trie pattern; longer ones (a sensitive document) are
# searched for one by one: the pattern's size grows with their length.
_TRIE_MAX_LEN = 256
# A sensitive `{$file: p}` input's contents are secrets when the file is at most this large: a key
# or a credentials file is small, and a larger file (a data set someone marked sensitive) is
# never searched for as a whole in every output.
_SECRET_FILE_MAX = 64 * 1024
_FILE_MARKER = "$file"


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Does a key look like it holds a credential? (`api_key`, `hf_token`, `db_password`, ...)"""
    if not _SECRET_NAME.search(name):
        return False
    return bool(_SECRET_NAME.search(_BENIGN_PARTS.sub("", name)))


def is_secret_url_param(name: str) -> bool:
    """Does a URL query parameter carry a credential? (`token`, `api_key`, `code`, `sig`, ...)"""
    return is_secret_name(name) or bool(_URL_SECRET_PARAM.match(name))


# --- the set of known secret values ----------------------------------------------------------


# Text that JSON (and Python's repr) and URL encoding leave as it is.
_JSON_PLAIN = re.compile(r"^[ !#-&(-\[\]-~]*$")
_URL_PLAIN = re.compile(r"^[A-Za-z0-9_.\-~]*$")


def encodings_of(value: str, min_len: int = _MIN_SECRET_LEN) -> set[str]:
    """`value` as it may appear in text jobrunner shows or stores: raw, JSON-escaped (once and
    twice: a JSON error detail inside a JSON document), URL-encoded, Python-repr-escaped, and the
    decoded form of a value that was written URL-encoded."""
    found = {value}
    # Most values need no escaping at all: only pay for the encodings that can differ.
    forms = {value, unquote(value), unquote_plus(value)} if ("%" in value or "+" in value) else {value}
    for text in forms:
        found.add(text)
        if not _JSON_PLAIN.match(text):
            once = json.dumps(text)[1:-1]
            found.update((once, json.dumps(text, ensure_ascii=False)[1:-1], json.dumps(once)[1:-1], repr(text)[1:-1]))
        if not _URL_PLAIN.match(text):
            found.update((quote(text, safe=""), quote(text), quote_plus(text)))
    return {v for v in found if len(v) >= min_len}


def _trie_pattern(values: Iterable[str]) -> str:
    """One regular expression matching any of `values`, longest first, built as a trie so the
    matcher follows one branch per character instead of trying every value at every position
    (10,000 values: 70 µs per short text instead of milliseconds)."""
    root: dict[str, Any] = {}
    for value in values:
        node = root
        for ch in value:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        # Iterative over runs of single children, so a 256-character value adds no recursion depth.
        out = []
        while True:
            children = [ch for ch in node if ch != ""]
            if len(children) == 1 and "" not in node:
                out.append(re.escape(children[0]))
                node = node[children[0]]
                continue
            break
        alts = [re.escape(ch) + build(node[ch]) for ch in sorted(children)]
        if alts:
            body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
            out.append(f"(?:{body})?" if "" in node else body)
        return "".join(out)

    return build(root)


class SecretSet:
    """An immutable set of secret values (with their encodings) and one compiled matcher."""

    def __init__(self, values: Iterable[str] = (), *, min_len: int = _MIN_SECRET_LEN) -> None:
        # A value inside "(sensitive)" itself would grow the text at every pass: never searched for.
        self._raw = frozenset(v for v in values if isinstance(v, str) and len(v) >= min_len and v not in REDACTED)
        self._min_len = min_len
        found: set[str] = set()
        for value in self._raw:
            found |= encodings_of(value, min_len)
        found = {v for v in found if v not in REDACTED}
        self.values = frozenset(found)
        short = sorted(v for v in found if len(v) <= _TRIE_MAX_LEN)
        long = [v for v in found if len(v) > _TRIE_MAX_LEN]
        try:
            self._pattern = re.compile(_trie_pattern(short)) if short else None
        except (RecursionError, re.error):  # a pathological set (deeply nested prefixes): search one by one
            self._pattern, long = None, list(found)
        self._long = sorted(long, key=len, reverse=True)
        # Values JSON writes as they are: then a JSON text without any of them holds none of them.
        self._plain = all(v.isascii() and v.isprintable() and '"' not in v and "\\" not in v for v in found)

    def __bool__(self) -> bool:
        return bool(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.values, key=len, reverse=True))

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __add__(self, other: Iterable[str]) -> SecretSet:
        """This set and `other`: one job's hidden input values (`hidden_values`), which are
        searched for down to 4 characters in that job's own logs."""
        return SecretSet([*self._raw, *other], min_len=min(self._min_len, 4))

    def absent_from(self, data: Any) -> bool:
        """True when no string or number inside JSON-like `data` holds a value of this set, told
        from its JSON text in C rather than by walking it. False when unsure (values JSON would
        escape, data that is not JSON): the caller then walks it."""
        if not self._plain:
            return False
        try:
            text = _ASCII_JSON.encode(data)
        except (TypeError, ValueError, RecursionError):
            return False
        return self.absent_from_json(text)

    def absent_from_json(self, text: str) -> bool:
        """`absent_from` for data already encoded: `text` is its JSON (ASCII-escaped or not: JSON
        writes a plain value's characters as they are either way, and escapes no others into
        them). A writer that encodes anyway checks its own text instead of encoding twice."""
        if not self._plain:
            return False
        if self._pattern is not None and self._pattern.search(text):
            return False
        return not any(value in text for value in self._long)

    def scrub(self, text: str) -> str:
        """`text` with every occurrence of a value replaced by "(sensitive)"."""
        for value in self._long:
            if value in text:
                text = text.replace(value, REDACTED)
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return text


Secrets = SecretSet | list[str]
# Non-ASCII escaped: a plain (printable ASCII) value inside a string shows in the text as it is.
_ASCII_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_EMPTY = SecretSet()


def _scalar_text(value: Any) -> str | None:
    """The text a scalar input value shows as, or None for what is never searched for (booleans,
    containers, short values)."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if len(text) >= _MIN_SECRET_LEN else None


def url_secrets(url: str) -> list[str]:
    """The secret parts of a (webhook) URL: userinfo (the password, or a lone user name, which is
    then a token), query values named like credentials or shaped like generated tokens (letters and
    digits, 8+ characters; `?event=completed` is not a secret), and path segments shaped like
    tokens (16+ characters of letters and digits, e.g. Slack's and Discord's hook paths)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found: list[str] = []
    if parts.password:
        found.append(parts.password)
    elif parts.username:
        found.append(parts.username)
    for m in _QUERY_PARAM.finditer("?" + parts.query if parts.query else ""):
        name, value = unquote_plus(m.group(2)), m.group(3)
        if value and (is_secret_url_param(name) or _TOKEN_SHAPED.match(value)):
            found += [value, unquote_plus(value)]
    for segment in parts.path.split("/"):
        if len(segment) >= _LONG_SEGMENT and _TOKEN_SHAPED.match(segment):
            found += [segment, unquote(segment)]
    return [v for v in found if len(v) >= _MIN_SECRET_LEN]


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


def _under_hidden_keys(value: Any, sensitive: Iterable[str], visit: Callable[[Any], None]) -> None:
    """Call `visit` on every value `redact(value, sensitive)` hides by key (secret-named or listed)."""
    names, paths = _split_sensitive(sensitive) if sensitive else (set(), set())

    def walk(v: Any, here: tuple[str, ...]) -> None:
        if isinstance(v, dict):
            for k, item in v.items():
                key = str(k)
                path = here + (key,) if paths else here  # paths are rare: no tuple per key without them
                if is_secret_name(key) or (names and key.lower() in names) or (paths and path in paths):
                    visit(item)
                elif isinstance(item, (dict, list)):
                    walk(item, path)
        elif isinstance(v, list):
            for item in v:
                walk(item, here)

    walk(value, ())


def hidden_scalars(value: Any, sensitive: Iterable[str] = ()) -> list[str]:
    """The scalar values `redact(value, sensitive)` would hide by key (secret-named or listed keys),
    as text: what must also be scrubbed wherever it turns up by value."""
    found: list[str] = []

    def all_scalars(v: Any) -> None:
        if isinstance(v, dict):
            for item in v.values():
                all_scalars(item)
        elif isinstance(v, list):
            for item in v:
                all_scalars(item)
        elif (text := _scalar_text(v)) is not None:
            found.append(text)

    _under_hidden_keys(value, sensitive, all_scalars)
    return found


def hidden_files(value: Any, sensitive: Iterable[str] = ()) -> list[str]:
    """The `{$file: p}` paths under the keys `redact(value, sensitive)` hides (secret-named or
    listed): files whose contents are secrets."""
    found: list[str] = []

    def markers(v: Any) -> None:
        if isinstance(v, dict):
            if len(v) == 1 and isinstance(v.get(_FILE_MARKER), str):
                found.append(v[_FILE_MARKER])
                return
            for item in v.values():
                markers(item)
        elif isinstance(v, list):
            for item in v:
                markers(item)

    _under_hidden_keys(value, sensitive, markers)
    return found


def file_secrets(path: Any) -> list[str]:
    """The secret values a sensitive file holds: its whole text and each of its lines (a key file
    quoted in part still hides). Nothing for a file that is missing, too large or not text."""
    from pathlib import Path

    try:
        file = Path(path)
        if file.stat().st_size > _SECRET_FILE_MAX:
            return []
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    values = [text.strip()] + [line.strip() for line in text.splitlines()]
    return [v for v in values if len(v) >= _MIN_SECRET_LEN]


class SecretRegistry:
    """The secret values one command knows. Process-wide (`SECRETS`), cleared when a command starts
    (`jobrunner.cli.main`), filled from the environment and the manifests, read through `snapshot`."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._snapshot: tuple[tuple[Any, ...], SecretSet] | None = None

    def clear(self) -> None:
        self._values.clear()
        self._snapshot = None

    def add(self, value: Any) -> None:
        """Register one secret value (too short or non-scalar values are ignored)."""
        text = _scalar_text(value)
        if text is not None and text not in self._values:
            self._values.add(text)
            self._snapshot = None

    def add_all(self, values: Iterable[Any]) -> None:
        for value in values:
            self.add(value)

    def add_url(self, url: Any) -> None:
        """Register the secret parts of a webhook URL (see `url_secrets`)."""
        if isinstance(url, str) and url:
            self.add_all(url_secrets(url))

    def add_input(self, value: Any, sensitive: Iterable[str] = ()) -> None:
        """Register the values an input hides by key (secret-named keys, `spec.sensitive`)."""
        self.add_all(hidden_scalars(value, sensitive))

    def add_hidden(self, recorded: Any, actual: Any) -> None:
        """Register the values of `actual` (a provider's copy of a job's input) at the places
        `recorded` (state's redacted copy) hides: works without the manifests."""
        self.add_all(v for v in hidden_values(recorded, actual) if len(v) >= _MIN_SECRET_LEN)

    def add_spec(self, spec: Any, base_dir: Any = None) -> None:
        """Register the secret values of a manifest's raw spec, before it is validated (so even a
        validation error that quotes one is scrubbed): sensitive and secret-named inputs of
        `input`, `input_defaults` and inline `inputs` rows, secret-named fields anywhere else,
        and the `webhook` URL; with `base_dir` (the manifest's directory, which `{$file: p}`
        paths are relative to), the contents of sensitive file inputs too."""
        if not isinstance(spec, dict):
            return
        listed = spec.get("sensitive")
        sensitive = [str(v) for v in listed] if isinstance(listed, list) else [str(listed)] if listed else []
        rows = spec.get("inputs")
        others = {k: v for k, v in spec.items() if k not in ("input", "input_defaults", "inputs")}
        # Other fields: an Emissary body's `parameters`, which `sensitive` may name too.
        # A row's `key` names its batch item (its address), never an input: not a secret-named field.
        named = [{k: v for k, v in r.items() if k != "key"} if isinstance(r, dict) else r
                 for r in (rows if isinstance(rows, list) else ())]
        parts = [spec.get("input"), spec.get("input_defaults"), *named, others]
        for part in parts:
            self.add_input(part, sensitive)
        self.add_url(spec.get("webhook"))
        if base_dir is not None:
            for part in parts:
                for rel in hidden_files(part, sensitive):
                    self.add_all(file_secrets(os.path.join(base_dir, rel)))

    def add_manifest_file(self, path: Any) -> None:
        """Register the secrets of one manifest file, read as plain YAML (best effort: a file that
        does not read adds nothing). For commands that show a job's output without validating the
        manifests (`logs`)."""
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                docs = list(yaml.safe_load_all(fh))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return
        for doc in docs:
            if isinstance(doc, dict):
                self.add_spec(doc.get("spec"), os.path.dirname(os.fspath(path)))

    def add_jobs(self, jobs: Iterable[Any], root: Any = None) -> None:
        """Register every secret value of desired jobs: sensitive and secret-named inputs (also
        secret-named fields of the whole request, e.g. an Emissary body) and webhook URLs; with
        the workspace `root`, also the contents of sensitive `{$file: p}` inputs (p is relative to it)."""
        read: set[str] = set()  # each file once, however many rows name it
        clear = _ClearShapes()
        for job in clear.unclear(jobs):
            request = getattr(job, "request", None) or {}
            sensitive = getattr(job, "sensitive_paths", ()) or ()
            if clear.holds_nothing(request, sensitive):
                continue  # e.g. a batch row of plain values under ordinary keys: nothing to find
            self.add_input(request.get("input"), sensitive)
            self.add_input({k: v for k, v in request.items() if k != "input"}, sensitive)
            self.add_url(request.get("webhook"))
            if root is None:
                continue
            others = {k: v for k, v in request.items() if k != "input"}
            for rel in hidden_files(request.get("input"), sensitive) + hidden_files(others, sensitive):
                if rel not in read:
                    read.add(rel)
                    self.add_all(file_secrets(os.path.join(root, rel)))

    def snapshot(self) -> SecretSet:
        """Everything known now, the environment's credentials included (read at each call, so a
        test or a command that changes the environment is seen)."""
        key = (len(self._values), _raw_environment())
        if self._snapshot is not None and self._snapshot[0] == key:
            return self._snapshot[1]
        env = tuple(os.environ.get(v) for v in SECRET_ENV_VARS + SECRET_URL_ENV_VARS)
        values = set(self._values)
        for var, val in zip(SECRET_ENV_VARS + SECRET_URL_ENV_VARS, env, strict=True):
            if not val:
                continue
            if var in SECRET_URL_ENV_VARS:
                try:
                    password = urlsplit(val).password
                except ValueError:
                    password = None
                if password:
                    values.add(password)
            else:
                values.add(val)
        snap = SecretSet(values)
        self._snapshot = (key, snap)
        return snap


def _raw_environment() -> tuple[Any, ...]:
    """The credential variables as `os.environ` holds them, each one dict lookup: `snapshot` runs
    several times per item of a batch, and `os.environ.get` raises and catches a KeyError inside
    for each variable that is not set."""
    names = SECRET_ENV_VARS + SECRET_URL_ENV_VARS
    data, encode = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if type(data) is not dict or encode is None:  # not CPython's os._Environ: the public way
        return tuple(os.environ.get(v) for v in names)
    if _ENV_KEYS[0] is not encode:  # the names as `os.environ` keys its dict, encoded once
        _ENV_KEYS[:] = [encode, tuple(encode(v) for v in names)]
    return tuple(map(data.get, _ENV_KEYS[1]))


_ENV_KEYS: list[Any] = [None, ()]  # [os.environ's key encoder, the encoded variable names]


class _ClearShapes:
    """Which requests hide nothing, decided once per shape: the 100,000 rows of a batch share their
    keys, and walking each for secret-named keys was a quarter of a big plan's CPU."""

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], bool] = {}

    def unclear(self, jobs: Iterable[Any]) -> Iterator[Any]:
        """The jobs that may hold something: a few thousand at a time, a run of rows that all hold
        plain values under ordinary keys is passed over whole (`_all_clear`); the others are
        judged one by one (`holds_nothing`)."""
        chunk: list[Any] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) == _RUN:
                yield from self._unclear_of(chunk)
                chunk = []
        yield from self._unclear_of(chunk)

    def _unclear_of(self, jobs: list[Any]) -> Iterator[Any]:
        if jobs and self._all_clear(jobs):
            return
        for job in jobs:
            request = getattr(job, "request", None) or {}
            if not self.holds_nothing(request, getattr(job, "sensitive_paths", ()) or ()):
                yield job

    def _all_clear(self, jobs: list[Any]) -> bool:
        """True when `holds_nothing` would say so of every job: all share one `sensitive`, every
        `input` is a dict of plain values (str, numbers, booleans, null), no other request value
        is a dict or list, no request has a webhook, and no key of any of them is secret-named or
        listed. Told with map() and sets over the whole run (C loops, not a Python call per row);
        False when unsure: the rows are then judged one by one."""
        try:
            listed = set(map(_SENSITIVE, jobs))
            requests = list(map(_REQUEST, jobs))
            if len(listed) != 1 or set(map(type, requests)) != {dict}:
                return False
            sensitive = tuple(listed.pop())
        except (AttributeError, TypeError):  # not jobs as expansion makes them: one by one
            return False
        inputs = [r.get("input") for r in requests]
        if set(map(type, inputs)) != {dict}:
            return False
        if not set(map(type, chain.from_iterable(map(dict.values, inputs)))) <= _PLAIN_TYPES:
            return False
        request_shapes = set(map(tuple, requests))
        if len(request_shapes) != 1:
            return False
        request_keys = set(request_shapes.pop())
        others = sorted(request_keys - {"input"}, key=str)
        # No other request value nested (an Emissary body's `parameters`): the input is the only dict.
        values = (map(itemgetter(*others), requests) if len(others) > 1
                  else ((v,) for v in map(itemgetter(*others), requests)) if others else iter(()))
        if any(issubclass(t, (dict, list)) for t in set(map(type, chain.from_iterable(values)))):
            return False
        if "webhook" in request_keys:
            return False
        # As `holds_nothing` reads them: the request's own keys but "input", and every input key
        # (an input field may itself be named "input", and be listed as `input.input`).
        keys = (request_keys - {"input"}).union(*set(map(tuple, inputs)))
        return self._keys_clear(tuple(sorted(map(str, keys))), sensitive)

    def _keys_clear(self, keys: tuple[str, ...], listed: tuple[str, ...]) -> bool:
        shape = ("all", keys, listed)
        clear = self._known.get(shape)
        if clear is None:
            names, _ = _split_sensitive(listed) if listed else (set(), set())
            clear = not any(is_secret_name(k) or k.lower() in names for k in keys)
            self._known[shape] = clear
        return clear

    def holds_nothing(self, request: dict[str, Any], sensitive: Iterable[str]) -> bool:
        """True when `request` and its `input` are flat (no dict or list values, so no `{$file}`
        either, and no webhook) and no key is secret-named or listed in `sensitive`: then
        `add_input`, `add_url` and `hidden_files` would find nothing in it."""
        inputs = request.get("input")
        if type(inputs) is not dict or "webhook" in request:
            return False
        listed = tuple(sensitive)
        shape = (tuple(request), tuple(inputs), listed)
        clear = self._known.get(shape)
        if clear is None:
            names, _ = _split_sensitive(listed) if listed else (set(), set())
            keys = [str(k) for k in request if k != "input"] + [str(k) for k in inputs]
            clear = not any(is_secret_name(k) or k.lower() in names for k in keys)
            self._known[shape] = clear
        return clear and _flat(inputs) and _flat(request, but="input")


# Values that hold no key, hence no secret-named one, and no `{$file}` marker.
_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))
_REQUEST = attrgetter("request")
_SENSITIVE = attrgetter("sensitive_paths")
_RUN = 4096


def _flat(value: dict[str, Any], but: str | None = None) -> bool:
    """No dict or list among the values (but the one under key `but`)."""
    for k, v in value.items():  # a loop, not any(): called for each of a big batch's rows
        if isinstance(v, (dict, list)) and k != but:
            break
    else:
        return True
    return False


SECRETS = SecretRegistry()


def register_secret(value: str | None) -> None:
    """Add a credential value (e.g. the local platform token) to what `scrub_text` removes."""
    SECRETS.add(value)


def register_jobs(jobs: Iterable[Any], root: Any = None) -> None:
    """Add the secret values of desired jobs (inputs, webhook URLs; with the workspace `root`, the
    contents of sensitive `{$file}` inputs) to what is scrubbed."""
    SECRETS.add_jobs(jobs, root)


def jobs_hold_no_secrets(jobs: Iterable[Any]) -> bool:
    """True when `register_jobs` would find nothing to register in `jobs` (judged as it judges
    them: a run of plain rows at once, the others one by one). A settled batch's rows are not
    registered again (jobrunner.settled): only a batch of which this is true is marked settled."""
    return next(_ClearShapes().unclear(jobs), None) is None


def known_secrets() -> SecretSet:
    """Secret values to scrub: the environment's credentials and everything registered."""
    return SECRETS.snapshot()


def _as_set(secrets: Secrets | None) -> SecretSet:
    if secrets is None:
        return known_secrets()
    if isinstance(secrets, SecretSet):
        return secrets
    return SecretSet(secrets) if secrets else _EMPTY


# --- applying it -----------------------------------------------------------------------------


def redact(value: Any, sensitive: Iterable[str] = (), *, secrets: Secrets | None = None,
           whole_values: bool = False) -> Any:
    """A copy of `value` with secret-looking and `sensitive` keys' values replaced by "(sensitive)".

    `sensitive` entries are key names (matched at any depth, case-insensitively) or dotted paths
    from the top of `value` (`input.` prefixes are ignored, so `input.auth.user` and `auth.user` are
    the same). Strings anywhere are also scrubbed of known secret values; with `whole_values` a
    string that holds one becomes "(sensitive)" whole (what state records as a job's inputs, where
    "(sensitive)" matches anything when a lost create is looked up). Callers redacting many values
    in a row may pass `secrets=known_secrets()` once.
    """
    names, paths = _split_sensitive(sensitive) if sensitive else (set(), set())
    return _redact(value, names, paths, (), _as_set(secrets), whole_values)


def _redact(value: Any, names: set[str], paths: set[tuple[str, ...]], here: tuple[str, ...], secrets: SecretSet,
            whole: bool) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            path = here + (key,)
            if key.lower() in names or path in paths or is_secret_name(key):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, names, paths, path, secrets, whole)
        return out
    if isinstance(value, list):
        return [_redact(v, names, paths, here, secrets, whole) for v in value]
    if isinstance(value, str):
        if whole:
            return REDACTED if value != REDACTED and _scrub(value, secrets) != value else value
        return _scrub(value, secrets)
    if secrets and not isinstance(value, bool) and isinstance(value, (int, float)) and str(value) in secrets:
        return REDACTED  # a sensitive number (an account id) echoed back as a number
    return value


def scrub_data(value: Any, *, secrets: Secrets | None = None, whole_values: bool = False) -> Any:
    """`value` (JSON-like) with known secret values scrubbed from its strings, by value only: keys
    are not looked at and no heuristic applies, so what state stores stays usable (a presigned
    download URL that a reference passes on is kept unless it holds a known value). Returns `value`
    itself, not a copy, when nothing changed: it runs on every address of every state save. With
    `whole_values`, a string holding a secret becomes "(sensitive)" whole."""
    found = _as_set(secrets)
    if not found:
        return value  # nothing to look for: every string and number stays as it is
    if found.absent_from(value):
        return value  # the usual case (a state save's addresses): one C pass instead of a walk
    return _scrub_deep(value, found, whole_values)


def _scrub_deep(value: Any, secrets: SecretSet, whole: bool) -> Any:
    if isinstance(value, str):
        scrubbed = secrets.scrub(value) if secrets else value
        if scrubbed == value:
            return value
        return REDACTED if whole else scrubbed
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            new = _scrub_deep(v, secrets, whole)
            if new is not v:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out
    if isinstance(value, list):
        items = [_scrub_deep(v, secrets, whole) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if secrets and not isinstance(value, bool) and isinstance(value, (int, float)) and str(value) in secrets:
        return REDACTED
    return value


# Everything `redact` (without `sensitive` names) reacts to: a secret-looking key (_SECRET_NAME)
# and the triggers of `_scrub`'s patterns (r8_ tokens, Bearer/Token headers, URLs). ASCII text is
# lowercased and searched word by word (an IGNORECASE regex took 17 µs a search, this 2 µs);
# other text goes through the regex, whose Unicode case folding lower() does not mirror.
_MAY_REDACT = re.compile(r"token|key|passw|pwd|secret|credential|auth|bearer|r8_|://", re.IGNORECASE)
_MAY_REDACT_WORDS = ("token", "key", "passw", "pwd", "secret", "credential", "auth", "bearer", "r8_", "://")


def redacts_nothing(text: str, secrets: SecretSet) -> bool:
    """True when `redact(value, secrets=secrets)` would return a copy equal to `value`, given
    `text`: the JSON of `value` (ensure_ascii=False) or any text holding each of its keys and
    strings JSON-escaped, and each number as JSON writes it. A fast check for readers that
    redact many values of which few hold anything to hide (`outputs` over a big batch): False
    only means "run redact". Sound because JSON escapes character by character, so a key or
    string matching a pattern, or holding a secret, leaves that match, or the secret's
    JSON-escaped form (one of its `encodings_of`), in `text`."""
    if text.isascii():
        low = text.lower()
        for word in _MAY_REDACT_WORDS:
            if word in low:
                return False
    elif _MAY_REDACT.search(text):
        return False
    return not secrets or secrets.scrub(text) == text


# Non-ASCII as it is: a look-alike key (a Kelvin-sign "Key") stays in the text for `redacts_nothing`.
_TEXT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def redact_unless_clear(value: Any, secrets: Secrets | None = None, *, whole_values: bool = False) -> Any:
    """`redact(value, secrets=secrets, whole_values=whole_values)`, or `value` itself (not a copy)
    when its JSON text shows there is nothing to hide in it (`redacts_nothing`; with nothing to
    hide, `whole_values` changes nothing): one encode in C instead of a walk that copies, for
    callers that copy or encode the result anyway, or never change it (each item of a batch)."""
    secrets = _as_set(secrets)
    try:
        text = _TEXT_JSON(value)
    except (TypeError, ValueError, RecursionError):
        return redact(value, secrets=secrets, whole_values=whole_values)
    if "\\u" in text or not redacts_nothing(text, secrets):  # an escaped character: walk it
        return redact(value, secrets=secrets, whole_values=whole_values)
    return value


def _scrub(text: str, secrets: SecretSet) -> str:
    if secrets:
        text = secrets.scrub(text)
    if "r8_" in text:
        text = _TOKEN_IN_TEXT.sub(REDACTED, text)
    if "Bearer" in text or "Token" in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text:
        if "=" in text:
            text = _QUERY_PARAM.sub(
                lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}" if is_secret_url_param(m.group(2)) else m.group(0),
                text)
        if "@" in text:
            text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
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
    elif recorded == REDACTED and isinstance(actual, (dict, list)):
        found += hidden_scalars({"secret": actual})
    elif isinstance(recorded, dict) and isinstance(actual, dict):
        for k, v in recorded.items():
            found += hidden_values(v, actual.get(k))
    elif isinstance(recorded, list) and isinstance(actual, list):
        # Lists of different lengths: the shared prefix is all that can pair a recorded value with one.
        for a, b in zip(recorded, actual, strict=False):
            found += hidden_values(a, b)
    return found


def scrub_text(text: str, *, secrets: Secrets | None = None) -> str:
    """`text` with every known secret value (raw or encoded), bearer/`r8_` tokens, secret URL query
    values and URL passwords replaced by "(sensitive)"."""
    return _scrub(text, _as_set(secrets))


def scrub_values(text: str, *, secrets: Secrets | None = None) -> str:
    """`text` with only the known secret values replaced: no heuristics, so it is safe for any
    output (schemas, help) where a word like "Token" followed by text is not a credential."""
    found = _as_set(secrets)
    return found.scrub(text) if found else text


__all__ = [
    "MIN_SECRET_LEN", "REDACTED", "SECRETS", "SECRET_ENV_VARS", "SecretRegistry", "SecretSet", "encodings_of",
    "file_secrets", "hidden_files", "hidden_scalars", "hidden_values", "is_secret_name", "is_secret_url_param",
    "jobs_hold_no_secrets", "known_secrets", "redact", "redact_unless_clear", "redacts_nothing",
    "register_jobs", "register_secret", "scrub_data", "scrub_text", "scrub_values", "url_secrets",
]
