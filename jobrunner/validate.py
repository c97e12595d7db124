"""Validate manifests: schema checks plus the semantic checks only jobrunner can make.

`validate_paths` reads every manifest file under the given paths and returns the resources plus
every diagnostic found, sorted, in one pass: YAML problems, schema violations (phrased for people,
positioned at the offending key), then cross-document checks (duplicate addresses, references and
their cycles, batch rows and inputs files, `$file` paths, webhooks, timeouts, provider-specific
requirements) and warnings for things that work but are probably wrong. It is pure apart from
reading files; nothing here talks to a provider.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobrunner.durations import DurationError, parse_duration
from jobrunner.errors import Diagnostic
from jobrunner.inputs import BatchItem, is_file_ref, load_batch_items, plain_row, resolve_relative
from jobrunner.jsonpaths import find_values
from jobrunner.loader import TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_TIMESTAMP, Document, child_path, load_file
from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import find_adapter
from jobrunner.references import Ref, find_cycles, find_malformed, find_refs, known_outputs, resource_outputs
from jobrunner.resources import API_VERSION, KINDS, Position, Resource
from jobrunner.schema import manifest_validator
from jobrunner.schema_fastpath import certainly_valid
from jobrunner.version_schemas import PREDICTION_INPUT, TRAINING_INPUT, known_input_schema
from jobrunner.workspace import discover_manifest_files, display_path

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_VERSION_WITH_MODEL = re.compile(r"(?P<model>[^:/\s]+/[^:/\s]+):(?P<id>[0-9a-f]{64})\Z")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$|^[0-9]+(\.[0-9]+)?$")
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")
_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}


@dataclass
class ValidationResult:
    resources: list[Resource] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # workspace-relative manifest files read
    # Files read that hold no YAML document at all (empty, whitespace, only comments or `---`).
    # Not an error in itself; planning refuses it for a file state still tracks jobs from.
    empty_files: list[str] = field(default_factory=list)
    # Batch items by PredictionBatch address, as read during validation (saves reading them twice).
    items: dict[str, list[BatchItem]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class _Collector:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[str, str, int, int, str, str]] = set()
        self._error_paths: set[tuple[str, str]] = set()

    def add(self, severity: str, file: str, pos: Position, message: str, address: str | None, json_path: str) -> None:
        key = (severity, file, pos.line, pos.column, json_path, message)
        if key in self._seen:
            return
        self._seen.add(key)
        if severity == "error":
            self._error_paths.add((file, json_path))
        self.diagnostics.append(Diagnostic(severity, file, pos.line, pos.column, message, address, json_path))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.add(d.severity, d.file, Position(d.line, d.column), d.message, d.address, d.json_path)

    def has_error_at(self, file: str, json_path: str) -> bool:
        return (file, json_path) in self._error_paths

    def error_at(self, r: Resource, json_path: str, message: str) -> None:
        self.add("error", r.file, r.position(json_path), message, r.address, json_path)

    def warn_at(self, r: Resource, json_path: str, message: str) -> None:
        self.add("warning", r.file, r.position(json_path), message, r.address, json_path)


def validate_paths(paths: list[Path], root: Path, *, also: Iterable[Path] = (),
                   settled: Callable[[Resource], bool] | None = None) -> ValidationResult:
    """Load and validate every manifest under `paths` (default: the workspace root).

    `also`: files read even when a directory scan would skip them (files state tracks jobs from:
    whatever they now hold must be reported, never taken for "no manifests here").
    `settled`: true for a batch proven settled (`jobrunner.settled`: the same document and rows,
    byte for byte, as an apply found valid and left all succeeded); its rows are not read again.
    """
    out = _Collector()
    docs: list[Document] = []
    files: list[str] = []
    empty: list[str] = []
    found = {str(p): p for p in discover_manifest_files(paths, root)}
    found.update({str(p.resolve()): p.resolve() for p in also if p.is_file()})
    for path in sorted(found.values()):
        shown = display_path(path, root)
        files.append(shown)
        loaded = load_file(path, shown)
        out.extend(loaded.diagnostics)
        docs.extend(loaded.documents)
        if not loaded.documents and not loaded.diagnostics:
            empty.append(shown)
    result = _validate(docs, files, root, out, settled)
    result.empty_files = empty
    return result


def validate_documents(docs: list[Document], root: Path) -> ValidationResult:
    """Validate already-loaded documents (for tests and callers that load text themselves)."""
    return _validate(docs, sorted({d.file for d in docs}), root, _Collector())


def _validate(docs: list[Document], files: list[str], root: Path, out: _Collector,
              settled: Callable[[Resource], bool] | None = None) -> ValidationResult:
    from jobrunner.redact import SECRETS

    result = ValidationResult(files=files)
    for doc in docs:  # before any message can quote one of their values (redact.SECRETS)
        SECRETS.add_spec(doc.data.get("spec") if isinstance(doc.data, dict) else None,
                         (root / doc.file).parent)  # {$file: p} is relative to the manifest
    for doc in docs:
        resource = _check_document(doc, out)
        if resource is not None:
            result.resources.append(resource)
    _check_workspace(result, root, out, settled)
    result.diagnostics = sorted(out.diagnostics, key=Diagnostic.sort_key)
    return result


# --- one document ---------------------------------------------------------------------------

def _check_document(doc: Document, out: _Collector) -> Resource | None:
    data = doc.data
    top = Position(doc.line, doc.column)
    if not isinstance(data, dict):
        out.add("error", doc.file, top,
                f"expected a mapping with apiVersion, kind, metadata and spec; got {_kind_of(data)}", None, "$")
        return None
    api = data.get("apiVersion")
    if api != API_VERSION:
        out.add("error", doc.file, doc.position("$.apiVersion"), _api_version_message(api), None, "$.apiVersion")
        return None
    kind = data.get("kind")
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    address = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) and kind in KINDS else None

    choice_paths: set[str] = set()
    for err in manifest_validator().iter_errors(data):
        for json_path, message in _explain(err, doc):
            # A field checked by the kind dispatch and again by the provider branch (e.g. an unknown
            # provider) would get two "must be one of" errors; the first is the more general one.
            if err.validator in ("enum", "const"):
                if json_path in choice_paths:
                    continue
                choice_paths.add(json_path)
            out.add("error", doc.file, doc.position(json_path), message, address, json_path)

    # YAML 1.1 readings that passed the schema (free-form input) but are probably not what was meant.
    for json_path, scalar in doc.implicit.items():
        if scalar.tag == TAG_TIMESTAMP:
            out.add("warning", doc.file, doc.position(json_path),
                    f"{scalar.text} looks like a date; jobrunner keeps it as the string {_show(scalar.text)} "
                    f"but YAML 1.1 tools read a timestamp: quote it", address, json_path)
        elif scalar.tag == TAG_INT and not _PLAIN_INT.match(scalar.text):
            out.add("warning", doc.file, doc.position(json_path),
                    f"`{scalar.text}` is read as the number {_show(scalar.value)} (YAML 1.1 octal, hex, sexagesimal or "
                    f"digit groups); quote it if you meant the text {_show(scalar.text)}", address, json_path)
        elif scalar.tag == TAG_BOOL and scalar.text.lower() in _YAML11_BOOL_WORDS:
            value = scalar.text.lower() in ("yes", "on", "y")
            out.add("warning", doc.file, doc.position(json_path),
                    f"`{scalar.text}` is read as the boolean {str(value).lower()} (YAML 1.1); write "
                    f"{str(value).lower()}, or quote it if you meant the text {_show(scalar.text)}", address, json_path)

    if kind not in KINDS or not isinstance(name, str) or not isinstance(data.get("spec"), dict):
        return None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict):
        labels = {}
    return Resource(
        kind=kind, name=name, spec=data["spec"], file=doc.file, line=doc.line, column=doc.column,
        labels={str(k): str(v) for k, v in labels.items()}, positions=doc.positions,
    )


def _api_version_message(api: Any) -> str:
    """Why a document's apiVersion is not ours, and what to write instead."""
    if api is None:
        return f"missing apiVersion: add `apiVersion: {API_VERSION}` (this document is not a jobrunner manifest)"
    if isinstance(api, str) and api.strip().lower().startswith("jobrunner/"):
        # Another version (or case) of ours: meant as a manifest, so say exactly what we read.
        hint = " (apiVersion is case-sensitive)" if api.strip().lower() == API_VERSION else ""
        return f"unsupported apiVersion {api.strip()}; this jobrunner reads {API_VERSION}{hint}"
    return f"apiVersion {_show(api)} is not {API_VERSION}; jobrunner manifests use `apiVersion: {API_VERSION}`"


def _explain(err: Any, doc: Document | None, base: str = "$") -> Iterable[tuple[str, str]]:
    """(json_path, message) for one jsonschema error, phrased for people.

    `base` is the JSON path of the validated instance inside its document; `doc` (when given)
    supplies the YAML 1.1 readings for the "quote it" hint.
    """
    path = base
    for part in err.absolute_path:
        path = child_path(path, part)
    schema = err.schema if isinstance(err.schema, dict) else {}
    validator = err.validator
    value = err.instance
    custom = schema.get("x-jobrunner-message")

    if validator == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed)):
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean `{hint[0]}`?)" if hint else f"; allowed: {', '.join(allowed)}"
            yield child_path(path, str(key)), f"unknown field `{key}`{suggestion}"
        return
    if validator == "required":
        missing = re.match(r"'(.*)' is a required property", err.message)
        field_name = missing.group(1) if missing else err.message
        yield path, f"missing required field `{field_name}`"
        return
    if validator == "type":
        trap = doc.implicit.get(path) if doc is not None else None
        wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        if trap is not None and "string" in wanted and trap.tag in (TAG_BOOL, TAG_INT, TAG_FLOAT):
            what = {TAG_BOOL: "a boolean", TAG_INT: "a number", TAG_FLOAT: "a number"}[trap.tag]
            yield path, (f"`{trap.text}` is read as {what} ({_show(value)}) by YAML, but a string is expected here: "
                         f"quote it: \"{trap.text}\"")
            return
        yield path, f"expected {_types(wanted)}, got {_kind_of(value)} {_show(value)}"
        return
    if custom:
        yield path, f"{custom} (got {_show(value)})"
        return
    if validator in ("enum", "const"):
        options = err.validator_value if validator == "enum" else [err.validator_value]
        shown = ", ".join(_show(o) for o in options)
        yield path, f"must be {'one of ' if len(options) > 1 else ''}{shown} (got {_show(value)})"
        return
    if validator in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match

        best = best_match(err.context) if err.context else None
        if best is not None:
            yield from _explain(best, doc, base)
        else:
            yield path, err.message
        return
    yield path, err.message


# --- across documents -------------------------------------------------------------------------

def _check_workspace(result: ValidationResult, root: Path, out: _Collector,
                     settled: Callable[[Resource], bool] | None = None) -> None:
    resources = result.resources
    by_addr: dict[str, Resource] = {}
    unique: list[Resource] = []
    for r in resources:
        first = by_addr.get(r.address)
        if first is not None:
            out.error_at(r, "$.metadata.name",
                         f"duplicate address {r.address}: already defined at {first.file}:{first.line}; "
                         f"names must be unique per kind")
            continue
        by_addr[r.address] = r
        unique.append(r)
    result.resources = unique

    models: dict[str, Resource] = {}
    for r in unique:
        if r.kind == "Model":
            owner, name = r.spec.get("owner"), r.spec.get("name")
            if isinstance(owner, str) and isinstance(name, str):
                full = f"{owner}/{name}"
                if full in models:
                    other = models[full]
                    out.error_at(r, "$.spec.name",
                                 f"model {full} is already declared by {other.address} ({other.file}:{other.line})")
                else:
                    models[full] = r

    refs = {r.address: find_refs(r.spec, "$.spec") for r in unique}
    output_files: dict[str, Resource] = {}
    for r in unique:
        _check_references(r, refs[r.address], by_addr, out)
        _check_files(r, root, out)
        _check_common(r, out)
        if r.kind == "Training":
            _check_training(r, root, models, out)
        elif r.kind == "PredictionBatch":
            _check_batch(r, root, out, result, output_files, settled)
        elif r.kind == "Deployment":
            _check_deployment(r, out)

    for cycle in find_cycles(unique, refs):
        first = by_addr[cycle[0]]
        nxt = cycle[1]
        ref_path = next((ref.json_path for ref in refs[first.address] if ref.address == nxt), "$.spec")
        text = " -> ".join(cycle)
        out.error_at(first, ref_path, f"reference cycle: {text}")


def _check_references(r: Resource, refs: list[Ref], by_addr: dict[str, Resource], out: _Collector) -> None:
    for json_path, text in find_malformed(r.spec, "$.spec"):
        out.error_at(r, json_path,
                     f"malformed reference {text}: write ${{Kind.name.output.field}}, e.g. "
                     "${Training.my-training.output.version} (use $${ for a literal ${)")
    for ref in refs:
        if ref.kind not in KINDS:
            out.error_at(r, ref.json_path, f"reference {ref.text}: unknown kind {ref.kind} (kinds: {', '.join(KINDS)})")
            continue
        target = by_addr.get(ref.address)
        if target is None:
            same_name = sorted(a for a in by_addr if a.split("/", 1)[1] == ref.name)
            names = sorted(a for a in by_addr if a.startswith(ref.kind + "/"))
            close = same_name or difflib.get_close_matches(ref.address, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.error_at(r, ref.json_path, f"reference {ref.text}: no resource {ref.address} in the workspace{hint}")
            continue
        if ref.address == r.address:
            continue  # reported as a cycle
        fields = resource_outputs(target)
        if ref.field not in fields:
            unset = ref.field == "output_file" and ref.field in known_outputs(target.kind, target.provider)
            why = "sets no spec.output_file" if unset else "has no output `" + ref.field + "`"
            out.error_at(r, ref.json_path,
                         f"reference {ref.text}: {target.address} ({target.provider}) {why}; "
                         f"known outputs: {', '.join(fields)}")


def _boundary(r: Resource, root: Path) -> Path:
    """Where a manifest's files must stay: the workspace, or for a manifest outside it (named on
    the command line from elsewhere) the manifest's own directory."""
    manifest = (root / r.file).resolve()
    return root.resolve() if _inside(manifest, root) else manifest.parent


def _inside(path: Path, boundary: Path) -> bool:
    try:
        base = str(boundary.resolve())
        return os.path.commonpath([str(path.resolve()), base]) == base
    except ValueError:  # different drives
        return False


def _check_file_ref(r: Resource, root: Path, json_path: str, value: Any, out: _Collector,
                    file: str | None = None, line: int | None = None) -> None:
    def err(msg: str) -> None:
        if file is not None and line is not None:
            out.add("error", file, Position(line, 1), msg, r.address, json_path)
        else:
            out.error_at(r, json_path, msg)

    if not is_file_ref(value):
        err("a file reference is exactly {$file: path} with a string path and no other keys")
        return
    rel = value["$file"]
    path = resolve_relative(r, root, rel)
    boundary = _boundary(r, root)
    if not _inside(path, boundary):
        err(f"$file {rel!r} is outside the workspace ({boundary}); keep files inside it so plans are reproducible")
    elif not path.exists():
        err(f"$file {rel!r} not found (looked for {display_path(path, root)}; paths are relative to the manifest)")
    elif not path.is_file():
        err(f"$file {rel!r} is not a regular file")


def _file_refs(value: Any, path: str) -> list[tuple[str, Any]]:
    """(json_path, value) of every mapping with a `$file` key."""
    return find_values(value, path, lambda v: isinstance(v, dict) and "$file" in v)


def _check_files(r: Resource, root: Path, out: _Collector) -> None:
    for json_path, value in _file_refs(r.spec, "$.spec"):
        _check_file_ref(r, root, json_path if is_file_ref(value) else child_path(json_path, "$file"), value, out)


def _check_common(r: Resource, out: _Collector) -> None:
    spec = r.spec
    adapter = find_adapter(r.provider)  # None: an unknown provider, which the schema reports
    timeout = spec.get("timeout")
    # Spellings the schema already rejected are not reported twice; this catches the rest (zero).
    if isinstance(timeout, (str, int, float)) and not isinstance(timeout, bool) and (
            not isinstance(timeout, str) or _DURATION.match(timeout)):
        try:
            seconds = parse_duration(timeout)
        except DurationError as exc:
            out.error_at(r, "$.spec.timeout", str(exc))
        else:
            if seconds < 60:
                out.warn_at(r, "$.spec.timeout", f"timeout {timeout} is under a minute; jobs are canceled that fast")
    webhook = spec.get("webhook")
    if isinstance(webhook, str) and "${" not in webhook:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            out.error_at(r, "$.spec.webhook", f"webhook {webhook!r} is not an http(s) URL")
        elif parts.scheme != "https" and adapter is not None and adapter.capabilities.https_webhooks_only:
            out.error_at(r, "$.spec.webhook", f"{adapter.title} only calls https webhooks; use an https:// URL")
    if spec.get("webhook_events_filter") and not spec.get("webhook"):
        out.warn_at(r, "$.spec.webhook_events_filter", "webhook_events_filter has no effect without a webhook")
    lifecycle = spec.get("lifecycle")
    if isinstance(lifecycle, dict) and lifecycle.get("prevent_cancel") and lifecycle.get("on_remove") == "keep":
        out.warn_at(r, "$.spec.lifecycle.prevent_cancel",
                    "prevent_cancel has no effect with on_remove: keep (removal never cancels)")
    if isinstance(lifecycle, dict) and lifecycle.get("on_remove") == "delete_version" and not (
            r.kind == "Training" and adapter is not None and adapter.form is RequestForm.VERSIONED):
        out.error_at(r, "$.spec.lifecycle.on_remove",
                     f"on_remove: delete_version deletes the version a Replicate training made; {r.address} "
                     f"({r.provider}) makes none: use cancel (the default) or keep")


def _check_training(r: Resource, root: Path, models: dict[str, Resource], out: _Collector) -> None:
    spec = r.spec
    adapter = find_adapter(r.provider)
    if adapter is None or adapter.form is not RequestForm.VERSIONED:
        return  # model, version and destination are the VERSIONED form's fields
    version, model = spec.get("version"), spec.get("model")
    if isinstance(version, str) and "${" not in version:
        m = _VERSION_WITH_MODEL.match(version)
        if m and isinstance(model, str) and "${" not in model and model != m["model"]:
            out.error_at(r, "$.spec.model", f"model {model} does not match the version's model {m['model']}")
        if _HEX64.match(version) and model is None:
            out.error_at(r, "$.spec", "missing required field `model`: a training needs the base model's owner/name "
                                      "(or write version as owner/name:<id>)")
    elif isinstance(version, str) and model is None:
        out.error_at(r, "$.spec", "missing required field `model`: a training needs the base model's owner/name")
    dest = spec.get("destination")
    if isinstance(dest, str) and "${" not in dest and "/" in dest and dest not in models:
        out.warn_at(r, "$.spec.destination",
                    f"destination {dest} is not declared as a Model in this workspace; it must already exist "
                    f"on {r.provider}")
    elif isinstance(dest, str) and dest in models and models[dest].provider != r.provider:
        out.error_at(r, "$.spec.destination",
                     f"destination {dest} is declared on provider {models[dest].provider}, but this training runs on "
                     f"{r.provider}")
    _check_sensitive(r, [spec.get("input")], out)
    _check_known_inputs(r, root, [(spec.get("input"), "$.spec.input", None, None)], TRAINING_INPUT, out)


def _check_deployment(r: Resource, out: _Collector) -> None:
    """What the schema cannot say: the model a bare version id needs, and instance bounds in order."""
    spec = r.spec
    adapter = find_adapter(r.provider)
    if adapter is None or adapter.form is not RequestForm.VERSIONED:
        return
    version, model = spec.get("version"), spec.get("model")
    if isinstance(version, str) and _HEX64.match(version) and model is None:
        out.error_at(r, "$.spec", "missing required field `model`: a deployment of a bare version id needs the "
                                  "model's owner/name (or write version as owner/name:<id>)")
    m = _VERSION_WITH_MODEL.match(version) if isinstance(version, str) and "${" not in version else None
    if m and isinstance(model, str) and "${" not in model and model != m["model"]:
        out.error_at(r, "$.spec.model", f"model {model} does not match the version's model {m['model']}")
    low, high = spec.get("min_instances"), spec.get("max_instances")
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool) and low > high:
        out.error_at(r, "$.spec.min_instances", f"min_instances {low} is more than max_instances {high}")


def _check_batch(r: Resource, root: Path, out: _Collector, result: ValidationResult,
                 output_files: dict[str, Resource], settled: Callable[[Resource], bool] | None = None) -> None:
    spec = r.spec
    has_inline, has_file = "inputs" in spec, "inputs_file" in spec
    if has_inline and has_file:
        out.error_at(r, "$.spec.inputs_file", "give either inputs or inputs_file, not both")
        return
    if not has_inline and not has_file:
        out.error_at(r, "$.spec", "missing required field `inputs` (inline rows) or `inputs_file` (JSONL or CSV)")
        return
    adapter = find_adapter(r.provider)
    project_body = adapter is not None and adapter.form is RequestForm.PROJECT_BODY
    if not project_body and spec.get("deployment") is not None and (
            spec.get("version") is not None or spec.get("model") is not None):
        out.error_at(r, "$.spec.deployment", "give either deployment or version/model, not both: a deployment "
                                             "already names the version it serves")
    elif not project_body and spec.get("version") is None and spec.get("model") is None and \
            spec.get("deployment") is None:
        out.error_at(r, "$.spec", "missing required field `version` (or `model` for an official model, "
                                  "or `deployment`)")
    if has_inline and not isinstance(spec.get("inputs"), list):
        return  # the schema reported it
    if settled is not None and settled(r):
        # Rows found valid by the apply that settled them, unchanged since: not read again.
        _check_output_file(r, root, out, output_files)
        return
    items, diags = load_batch_items(r, root)
    # Inline rows were schema-checked already: do not say twice that a row is not a mapping.
    out.extend(d for d in diags if not out.has_error_at(d.file, d.json_path))
    result.items[r.address] = items
    if not items and not diags:
        out.warn_at(r, "$.spec.inputs_file" if has_file else "$.spec.inputs", "the batch has no rows: nothing will run")
    # $file inside rows read from an inputs file (inline rows were checked with the spec).
    if has_file:
        for item in items:
            if plain_row(item.input):
                continue  # the common row: no mapping anywhere, so no {$file: ...}
            for json_path, value in _file_refs(item.input, "$.input"):
                _check_file_ref(r, root, json_path, value, out, item.file, item.line)
    _check_output_file(r, root, out, output_files)
    _check_sensitive(r, [spec.get("input_defaults")] + [i.input for i in items[:1000]], out)
    defaults: dict[str, Any] = spec["input_defaults"] if isinstance(spec.get("input_defaults"), dict) else {}
    rows: list[tuple[Any, str, str | None, int | None]] = []
    for item in items:
        if has_file:
            rows.append((item.input, "$.input", item.file, item.line))
        else:
            rows.append((item.input, item.json_path, None, None))
    if project_body:
        _check_endpoint_rows(r, root, rows, out, defaults)
    else:
        _check_known_inputs(r, root, rows, PREDICTION_INPUT, out, defaults)


def _check_output_file(r: Resource, root: Path, out: _Collector, output_files: dict[str, Resource]) -> None:
    """A batch's output file stays inside the workspace, and no two batches share one."""
    out_file = r.spec.get("output_file")
    if isinstance(out_file, str):
        path = resolve_relative(r, root, out_file)
        if not _inside(path, _boundary(r, root)):
            out.error_at(r, "$.spec.output_file", f"output_file {out_file!r} is outside the workspace")
        else:
            key = str(path.resolve())
            other = output_files.get(key)
            if other is not None:
                out.error_at(r, "$.spec.output_file",
                             f"output_file {out_file!r} is also written by {other.address}; each batch needs its own")
            else:
                output_files[key] = r


def _check_endpoint_rows(r: Resource, root: Path, rows: list[tuple[Any, str, str | None, int | None]],
                         out: _Collector, defaults: dict[str, Any]) -> None:
    """Rows sent to a deployment endpoint (the adapter's `endpoint_bodies`): each one is that
    endpoint's request body."""
    from jobrunner.schema import load_schema

    adapter = find_adapter(r.provider)
    body = adapter.endpoint_bodies.get(str(r.spec.get("endpoint"))) if adapter is not None else None
    if body is None:
        return  # the schema reported the endpoint
    schema = load_schema()["definitions"][body]
    _check_known_inputs(r, root, rows, PREDICTION_INPUT, out, defaults, schema=schema,
                        label=f"{r.spec['endpoint']} request body")


def _placeholders(value: Any) -> Any:
    """Input as the provider will see it: uploaded files become URLs, references stay strings."""
    if plain_row(value):
        return value  # nothing to replace: validated as it is (never changed by the validator)
    if is_file_ref(value):
        return "file:///uploaded-at-apply"
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    return value


def _check_known_inputs(r: Resource, root: Path, rows: list[tuple[Any, str, str | None, int | None]],
                        kind: str, out: _Collector, defaults: dict[str, Any] | None = None, *,
                        schema: dict[str, Any] | None = None, label: str | None = None) -> None:
    """Check inputs against the version's input schema when it is known offline (see version_schemas),
    or against `schema` (named `label` in messages) when given."""
    if schema is None:
        schema = known_input_schema(r.provider, r.spec.get("version"), kind, root)
    if schema is None:
        return
    from jsonschema import Draft7Validator

    validator = Draft7Validator(schema)
    valid = certainly_valid(schema) or _never  # rows it vouches for would get no error from iter_errors
    if label is None:
        version = str(r.spec.get("version"))
        model = r.spec.get("model") if isinstance(r.spec.get("model"), str) else None
        label = (model or (version.split(":", 1)[0] if ":" in version else f"version {version[:12]}")) + " input"
    reported_defaults: set[str] = set()
    for value, base, file, line in rows:
        if not isinstance(value, dict):
            continue
        seen = _placeholders(value)
        if valid(seen):
            continue
        for err in validator.iter_errors(seen):
            for json_path, message in _explain(err, None, base):
                if "${" in json.dumps(err.instance, default=str):
                    continue  # a reference: its value is known after apply
                text = f"{label} schema: {message}"
                top = err.absolute_path[0] if err.absolute_path else None
                if defaults and isinstance(top, str) and top in defaults and top not in _own_keys(value, defaults):
                    # the bad value came from input_defaults: report it once, there
                    dpath = json_path.replace(base, "$.spec.input_defaults", 1)
                    if dpath not in reported_defaults:
                        reported_defaults.add(dpath)
                        out.error_at(r, dpath, text)
                elif file is not None and line is not None:
                    out.add("error", file, Position(line, 1), text, r.address, json_path)
                else:
                    out.error_at(r, json_path, text)


def _never(_: Any) -> bool:
    return False


def _own_keys(row: dict[str, Any], defaults: dict[str, Any]) -> set[str]:
    """Keys a merged row got from the row itself (a default with an equal value counts as the default)."""
    return {k for k, v in row.items() if k not in defaults or defaults[k] is not v}


def _check_sensitive(r: Resource, inputs: list[Any], out: _Collector) -> None:
    sensitive = r.spec.get("sensitive")
    if not isinstance(sensitive, list):
        return
    present: set[str] = set()
    for inp in inputs:
        if isinstance(inp, dict):
            present.update(map(str, inp))
    for i, key in enumerate(sensitive):
        if isinstance(key, str) and key not in present:
            out.warn_at(r, f"$.spec.sensitive[{i}]", f"sensitive key `{key}` does not appear in the input")


# --- small helpers -----------------------------------------------------------------------

def _show(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _types(wanted: list[str]) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "number": "a number",
             "integer": "an integer", "boolean": "a boolean", "null": "null"}
    words = [names.get(w, w) for w in wanted if not (w == "integer" and "number" in wanted)]
    return " or ".join(words)


__all__ = ["ValidationResult", "validate_paths", "validate_documents"]
