"""Text and JSON renderings of validation diagnostics.

Text is one line per diagnostic (`path:line:col: Kind/name: $.json.path: message`, the form editors
and CI log viewers turn into links) plus a summary line. JSON follows `terraform validate -json`:
`format_version`, `valid`, `error_count`, `warning_count` and `diagnostics[]`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from jobrunner.errors import Diagnostic
from jobrunner.render.formats import FORMAT_VERSION


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_text(diagnostics: Iterable[Diagnostic], *, files: int, resources: int) -> str:
    diags = sorted(diagnostics, key=Diagnostic.sort_key)
    errors = sum(1 for d in diags if d.severity == "error")
    warnings = len(diags) - errors
    lines = [d.format() for d in diags]
    if not files and not diags:
        lines.append("No manifests found: no *.yaml or *.yml file under the given paths carries "
                     "`apiVersion: jobrunner/v1`.")
    elif errors:
        lines.append(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {_plural(files, 'file')}.")
    else:
        tail = f" ({_plural(warnings, 'warning')})" if warnings else ""
        lines.append(f"Success! {_plural(resources, 'resource')} in {_plural(files, 'file')} "
                     f"{'is' if resources == 1 else 'are'} valid{tail}.")
    return "\n".join(lines)


def diagnostic_dict(d: Diagnostic) -> dict[str, Any]:
    return {
        "severity": d.severity,
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "address": d.address,
        "json_path": d.json_path,
        "message": d.message,
    }


def render_json(diagnostics: Iterable[Diagnostic], *, files: list[str] | None = None) -> str:
    diags = sorted(diagnostics, key=Diagnostic.sort_key)
    errors = sum(1 for d in diags if d.severity == "error")
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": len(diags) - errors,
        "diagnostics": [diagnostic_dict(d) for d in diags],
    }
    if files is not None:
        doc["files"] = list(files)
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Iterable[Diagnostic], *, files: int, resources: int) -> str:
    """GitHub Actions workflow commands: each diagnostic becomes an annotation on the pull request diff."""
    diags = sorted(diagnostics, key=Diagnostic.sort_key)
    lines = []
    for d in diags:
        level = "error" if d.severity == "error" else "warning"
        props = f"file={_escape_property(d.file)},line={d.line},col={d.column}"
        if d.address:
            props += f",title={_escape_property(d.address)}"
        lines.append(f"::{level} {props}::{_escape_data(f'{d.json_path}: {d.message}')}")
    lines.append(render_text(diags, files=files, resources=resources).splitlines()[-1])  # the summary
    return "\n".join(lines)


__all__ = ["FORMAT_VERSION", "render_text", "render_json", "render_github", "diagnostic_dict"]
