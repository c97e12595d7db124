"""Batch output files: each PredictionBatch's `output_file`, (re)written at the end of an apply.

A batch this run touched is always written; an untouched one only when its file does not hold what
state says it should (rows were removed, or a kill came after the jobs finished and before the file
was written), so a converged apply repairs a stale file without rewriting every file every time.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobrunner.reconcile.outputs import batch_key, output_rows, write_jsonl
from jobrunner.resources import DesiredJob, Resource
from jobrunner.state.model import StateDoc


def output_files_due(root: Path, resources: dict[str, Resource], desired: Iterable[DesiredJob], doc: StateDoc,
                     touched: set[str] | frozenset[str] = frozenset()) -> list[tuple[Path, list[dict[str, Any]]]]:
    """The batch output files to (re)write, with their rows: a touched batch's always; an untouched
    one's when its file does not hold what it should (rows were removed, or a kill came after the
    jobs finished and before the file was written)."""
    from jobrunner.redact import redact

    jobs = list(desired)
    due = []
    for res_addr, resource in resources.items():
        out_file = resource.spec.get("output_file") if resource.kind == "PredictionBatch" else None
        if not out_file:
            continue
        path = (root / resource.file).parent / str(out_file)
        items = [j for j in jobs if j.resource_address == res_addr]
        if not items or not any(doc.addresses.get(j.address) for j in items):
            continue
        rows = output_rows([
            (batch_key(j.address) or j.address, redact(j.request.get("input") or {}, j.sensitive_paths),
             doc.addresses.get(j.address))
            for j in items
        ])
        if res_addr in touched or not _file_holds(path, rows):
            due.append((path, rows))
    return due


def _file_holds(path: Path, rows: list[dict[str, Any]]) -> bool:
    """Does the output file at `path` already hold exactly `rows` (as `write_jsonl` writes them)?"""
    # Row by row: a 100,000-row file is never held whole, nor parsed whole, nor its rows copied.
    try:
        with open(path, encoding="utf-8") as fh:
            lines = (line for line in fh if line.strip())
            for row in rows:
                line = next(lines, None)
                if line is None or json.loads(line) != json.loads(json.dumps(row, default=str)):
                    return False
            return next(lines, None) is None
    except (OSError, ValueError):
        return False


def write_output_files(root: Path, resources: dict[str, Resource], desired: Iterable[DesiredJob], doc: StateDoc,
                       touched: set[str], progress: Any) -> list[str]:
    """Write the files that are due; returns them as shown to the user (workspace-relative)."""
    written = []
    for path, rows in output_files_due(root, resources, desired, doc, touched):
        write_jsonl(path, rows)
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        written.append(shown)
        progress.note(f"Wrote {shown} ({len(rows)} item(s))")
    return written
