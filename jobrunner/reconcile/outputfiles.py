"""Batch output files: each PredictionBatch's `output_file`, appended to as items end and put in
order at the end of an apply.

As results arrive (`OutputAppender`): the first item of a batch to end in this run rewrites the file
with the rows of the items this run will not touch (finished ones whose plan is no-op), then every
item that ends appends its row. A long batch's results can be read while it runs, and an apply
killed half-way leaves a valid file of whole rows (each item at most once), which the next apply
completes.

At the end (`write_output_files`): the documented format is one row per item in manifest order,
including items that have not ended. A batch this run touched is rewritten so (items end out of
order, so its appended file rarely is); an untouched one only when its file does not hold what
state says it should (rows were removed, or a kill came after the jobs finished and before the
file was complete), so a converged apply repairs a stale file without rewriting every file every
time.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jobrunner.crashpoints import crash_point
from jobrunner.plan_types import NOOP, Plan
from jobrunner.reconcile.appended import AppendedFile, Stale, reused_lines
from jobrunner.reconcile.outputmarks import OutputMarks, RowsKey
from jobrunner.reconcile.outputs import batch_key, output_rows, scrubbed_row_line, write_jsonl, write_lines
from jobrunner.resources import DesiredJob, Resource
from jobrunner.state.model import AddressState, StateDoc


def output_path(root: Path, resource: Resource) -> Path | None:
    """Where a PredictionBatch's `output_file` goes (relative to its manifest), None without one."""
    out_file = resource.spec.get("output_file") if resource.kind == "PredictionBatch" else None
    return (root / resource.file).parent / str(out_file) if out_file else None


def _row(job: DesiredJob, st: AddressState | None, secrets: Any = None, input_clear: bool = False) -> dict[str, Any]:
    """The item's row of its batch's output file (before the file boundary's scrub). `input_clear`:
    the input is known to hold nothing to hide under `secrets` (see `OutputAppender.item_ended`)."""
    from jobrunner.redact import redact, redact_unless_clear

    value = job.request.get("input") or {}
    if input_clear and not job.sensitive_paths:
        redacted = value
    elif job.sensitive_paths:
        redacted = redact(value, job.sensitive_paths, secrets=secrets)
    else:  # the row is encoded, never changed: an input with nothing to hide is not copied
        redacted = redact_unless_clear(value, secrets)
    return output_rows([(batch_key(job.address) or job.address, redacted, st)])[0]


class OutputAppender:
    """Appends each batch item's row to its batch's output file as soon as the item has ended.

    The state of an item is saved before its row is appended, and a row is one `write` of a whole
    line to a file opened for appending (once per batch, `appended.AppendedFile`), so a killed
    apply leaves only whole rows behind. `close()` before the end's rewrite, which copies the rows
    appended here (`write_output_files(..., appended=)`).
    """

    def __init__(self, root: Path, resources: dict[str, Resource], desired: dict[str, DesiredJob], doc: StateDoc,
                 plan: Plan) -> None:
        self.root, self.resources, self.desired, self.doc, self.plan = root, resources, desired, doc, plan
        self._files: dict[str, AppendedFile | None] = {}  # batch -> its file, once the run started appending
        self.appended = 0  # rows appended in this run (tests, benchmarks)

    def item_ended(self, job: DesiredJob, st: AddressState, *, input_clear: bool = False) -> None:
        """`input_clear`: the caller knows the job's input has nothing to hide under the known
        secrets (its recorded inputs came out of redaction as they were): not checked again."""
        from jobrunner.redact import known_secrets

        batch = job.resource_address
        if batch not in self._files:
            self._files[batch] = self._start(batch)
        out = self._files[batch]
        if out is None:
            return  # no output file
        if out.holds(job.address):  # ended twice in one run: the rewrite at the end settles it
            out.reusable = False
            return
        secrets = known_secrets()
        out.append(job.address, scrubbed_row_line(_row(job, st, secrets, input_clear), secrets).encode("utf-8"),
                   secrets)
        self.appended += 1
        crash_point("outputs.row_appended")

    def _start(self, batch: str) -> AppendedFile | None:
        """The batch's file, rewritten with the rows of the items this run leaves as they are (ended,
        and planned as no-op): the rows of the others are appended as they end, so none is there twice."""
        from jobrunner.redact import known_secrets

        resource = self.resources.get(batch)
        path = output_path(self.root, resource) if resource is not None else None
        if path is None:
            return None
        acting = {c.address for c in self.plan.changes if c.action != NOOP}
        kept = [(job, st) for job in self.desired.values() if job.resource_address == batch
                and job.address not in acting and (st := self.doc.addresses.get(job.address)) is not None
                and _ended(st)]
        secrets = known_secrets()
        write_jsonl(path, (_row(job, st, secrets) for job, st in kept))
        return AppendedFile(path, [job.address for job, _ in kept], secrets)

    def close(self) -> dict[Path, AppendedFile]:
        """Close the files; returns them by path for the end's rewrite (`write_output_files`)."""
        files = {}
        for out in self._files.values():
            if out is not None:
                out.close()
                files[out.path] = out
        return files


def _ended(st: AddressState) -> bool:
    from jobrunner.providers.base import TERMINAL

    return st.status in TERMINAL


class BatchRows:
    """A batch's output rows, made one at a time whenever they are iterated: the 100,000 rows of a
    big batch (some 1.5 KB each in memory) are never all held, neither to check a file nor to write it."""

    def __init__(self, jobs: list[DesiredJob], doc: StateDoc, secrets: Any) -> None:
        self._jobs, self._doc, self._secrets = jobs, doc, secrets

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        addresses = self._doc.addresses
        return (_row(j, addresses.get(j.address), self._secrets) for j in self._jobs)

    def addresses_and_keys(self) -> tuple[list[str], list[str]]:
        """The rows' addresses and keys, in order."""
        addresses = [j.address for j in self._jobs]
        return addresses, [batch_key(a) or a for a in addresses]

    def line(self, index: int) -> str:
        """Row `index` as `write_jsonl` writes it."""
        job = self._jobs[index]
        return scrubbed_row_line(_row(job, self._doc.addresses.get(job.address), self._secrets), self._secrets)


def output_files_due(root: Path, resources: dict[str, Resource], desired: Iterable[DesiredJob], doc: StateDoc,
                     touched: set[str] | frozenset[str] = frozenset(),
                     marks: OutputMarks | None = None) -> list[tuple[Path, BatchRows, RowsKey]]:
    """The batch output files to (re)write, with their rows: a touched batch's always; an untouched
    one's when its file does not hold what it should (rows were removed, or a kill came after the
    jobs finished and before the file was written). A file whose mark proves it unchanged since
    apply wrote or checked it for the same rows is not read row by row (`outputmarks`); one found
    right row by row is marked. Rows are made as they are read (`BatchRows`), so a converged apply
    over 100,000 items checks its file without holding them."""
    from jobrunner.redact import known_secrets

    secrets = known_secrets()  # once, not once per row
    marks = marks if marks is not None else OutputMarks(root)
    by_batch: dict[str, list[DesiredJob]] = {}
    for job in desired:
        by_batch.setdefault(job.resource_address, []).append(job)
    due = []
    for res_addr, resource in resources.items():
        path = output_path(root, resource)
        items = by_batch.get(res_addr)
        if path is None or not items or not any(doc.addresses.get(j.address) for j in items):
            continue
        rows, key = BatchRows(items, doc, secrets), RowsKey(items, doc, secrets)
        if res_addr in touched:
            due.append((path, rows, key))
        elif marks.holds(path, key):
            continue
        elif _file_holds(path, rows, secrets):
            marks.record(path, key)
        else:
            due.append((path, rows, key))
    marks.save()
    return due


def _file_holds(path: Path, rows: Iterable[dict[str, Any]], secrets: Any) -> bool:
    """Does the output file at `path` already hold exactly `rows` (as `write_jsonl` writes them)?"""
    # Row by row: a 100,000-row file is never held whole, nor parsed whole, nor its rows copied.
    # A line is first compared as text with what `write_jsonl` writes (the file jobrunner wrote);
    # only a line that differs is parsed, so a file reformatted by hand still counts when equal.
    try:
        with open(path, encoding="utf-8") as fh:
            lines = (line for line in fh if line.strip())
            for row in rows:
                line = next(lines, None)
                if line is None:
                    return False
                expected = scrubbed_row_line(row, secrets)
                if line != expected and json.loads(line) != json.loads(expected):
                    return False
            return next(lines, None) is None
    except (OSError, ValueError):
        return False


def write_output_files(root: Path, resources: dict[str, Resource], desired: Iterable[DesiredJob], doc: StateDoc,
                       touched: set[str], progress: Any,
                       appended: dict[Path, AppendedFile] | None = None) -> list[str]:
    """Write the files that are due; returns them as shown to the user (workspace-relative).
    `appended`: what this run appended to them (`OutputAppender.close`), copied where still valid."""
    written = []
    marks = OutputMarks(root)
    for path, rows, key in output_files_due(root, resources, desired, doc, touched, marks):
        out = (appended or {}).get(path)
        if out is None or not _write_reusing(path, rows, out):
            write_jsonl(path, rows)
        marks.record(path, key)
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        written.append(shown)
        progress.note(f"Wrote {shown} ({len(rows)} item(s))")
    marks.save()
    return written


def _write_reusing(path: Path, rows: BatchRows, out: AppendedFile) -> bool:
    """`write_jsonl(path, rows)`, copying the lines this run appended (`appended.reused_lines`);
    False (nothing written) when they cannot be trusted: the caller writes every row then."""
    from jobrunner.redact import known_secrets

    secrets = known_secrets()
    try:
        out.check(secrets)
        write_lines(path, reused_lines(out, *rows.addresses_and_keys(), rows.line))
    except Stale:
        return False
    return True
