"""The marks of settled batches, kept beside the state, so a re-plan need not read their rows.

`jobrunner.settled` says what a mark holds and what proves a batch settled. This module reads the
marks (`.jobrunner/settled-batches.json` at the workspace root), proves batches against them for
planning (`SettledCheck`), and records them after an apply (`record_settled`).

The file is a cache: losing, corrupting or deleting it costs one full plan, never a wrong one (a
mark is only believed after today's rows digest to its `inputs` and state digests to its `rows`).
State itself is unchanged, so any jobrunner reads a state written alongside these marks, and a
mark left behind by an older or newer jobrunner names another version in its `inputs` digest and
is ignored. Only `apply` writes the file (under the state lock); `plan` only reads it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobrunner.inputs import resolve_relative
from jobrunner.providers.base import SUCCEEDED
from jobrunner.resources import DesiredJob, Resource
from jobrunner.settled import BatchMark, SettledProof, inputs_digest, prove, rows_digest
from jobrunner.spec import SettledJob
from jobrunner.state.model import StateDoc

MARKS_PATH = ".jobrunner/settled-batches.json"
_FORMAT = 1


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("batches"), dict):
        return {}
    return dict(data["batches"])


def _write(path: Path, batches: dict[str, Any]) -> None:
    """Atomically; a failure only means the next plan takes the full path."""
    from jobrunner.reconcile.outputmarks import write_marks_file

    write_marks_file(path, {"format": _FORMAT, "batches": batches})


def batch_inputs_digest(res: Resource, root: Path) -> str | None:
    """`settled.inputs_digest` of `res` with its inputs file read; None when it cannot be read."""
    spec = res.spec
    if res.kind != "PredictionBatch":
        return None
    data: bytes | None = None
    if spec.get("inputs_file") is not None:
        if not isinstance(spec["inputs_file"], str):
            return None
        try:
            data = resolve_relative(res, root, spec["inputs_file"]).read_bytes()
        except OSError:
            return None
    return inputs_digest(res, data)


class SettledCheck:
    """Validation's question "is this batch settled?" (`validate_paths(settled=...)`), answered from
    the marks and the loaded state; the proofs found, for expansion (`spec.expand(settled=...)`)."""

    def __init__(self, root: Path, doc: StateDoc) -> None:
        self.root, self.doc = root, doc
        self._marks = _read(root / MARKS_PATH)
        self.proofs: dict[str, SettledProof] = {}

    def __call__(self, res: Resource) -> bool:
        mark = BatchMark.from_json(self._marks.get(res.address))
        if mark is None:
            return False
        proof = prove(res, batch_inputs_digest(res, self.root), mark, self.doc.addresses)
        if proof is None:
            self.proofs.pop(res.address, None)
            return False
        self.proofs[res.address] = proof
        return True


def _mark_of(res: Resource, root: Path, jobs: list[DesiredJob], doc: StateDoc) -> BatchMark | None:
    """The mark of a batch an apply leaves with every row succeeded at its desired fingerprint,
    or None (some row is not, or the batch is not one marks cover)."""
    from jobrunner.reconcile.outputmarks import written_digest
    from jobrunner.redact import jobs_hold_no_secrets

    prefix = res.address + "["
    if not jobs or any(type(j) is not DesiredJob or j.fingerprint is None or j.depends_on
                       or not j.address.startswith(prefix) for j in jobs):
        return None
    for j in jobs:
        st = doc.addresses.get(j.address)
        if (st is None or st.status != SUCCEEDED or st.intent is not None or not st.remote_id
                or st.fingerprint != j.fingerprint):
            return None
    digest = batch_inputs_digest(res, root)
    if digest is None or not jobs_hold_no_secrets(jobs):
        return None
    addresses = [j.address for j in jobs]
    return BatchMark(inputs=digest, keys=tuple(a[len(prefix):-1] for a in addresses),
                     rows=rows_digest(addresses, [j.fingerprint for j in jobs]), written=written_digest(jobs).hex())


def record_settled(root: Path, resources: Iterable[Resource], desired: Iterable[DesiredJob], doc: StateDoc,
                   warned: frozenset[str] | None) -> None:
    """After an apply: mark each batch it leaves settled, forget the marks of the others it planned.

    `warned`: resource addresses validation warned about (their rows are not marked: a settled
    batch's rows are not validated again, so their warnings would be lost); None: a warning named no
    resource, and nothing is marked. A batch already proven settled keeps its mark as it is.
    """
    path = root / MARKS_PATH
    marks = _read(path)
    before = dict(marks)
    by_batch: dict[str, list[DesiredJob]] = {}
    for job in desired:
        by_batch.setdefault(job.resource_address, []).append(job)
    for res in resources:
        jobs = by_batch.get(res.address, [])
        if res.kind != "PredictionBatch" or (jobs and isinstance(jobs[0], SettledJob)):
            continue  # not a batch; or proven settled by its mark, which stays as it is
        mark = _mark_of(res, root, jobs, doc) if warned is not None and res.address not in warned else None
        if mark is None:
            marks.pop(res.address, None)
        else:
            marks[res.address] = mark.to_json()
    if marks != before:
        _write(path, marks)


def prime_output_marks(root: Path, resources: Iterable[Resource], addresses: dict[str, Any]) -> None:
    """After an apply left its snapshot's decoded copy (`addresses`: as every later load builds
    them): check the output-file mark of each batch proven settled against that state, as a
    converged apply would (`OutputMarks.holds`: the file's bytes, then the rows' full digest),
    which also adds the quick digest of the packed outputs to a mark that holds. The first
    no-change apply after this one then finds the mark by its quick digest. Never raises for a
    mark that does not hold: it stays as it was, and that apply checks it as before."""
    from jobrunner.reconcile.outputfiles import output_path
    from jobrunner.reconcile.outputmarks import OutputMarks, RowsKey
    from jobrunner.redact import known_secrets
    from jobrunner.spec import expand

    batches = _read(root / MARKS_PATH)
    doc = StateDoc(addresses=addresses)
    marks, secrets = OutputMarks(root), known_secrets()
    for res in resources:
        path = output_path(root, res)
        mark = BatchMark.from_json(batches.get(res.address))
        proof = prove(res, batch_inputs_digest(res, root), mark, addresses) if path is not None else None
        if path is not None and proof is not None:
            jobs = expand([res], root, state=doc, settled={res.address: proof})
            marks.holds(path, RowsKey(jobs, doc, secrets))
    marks.save()


__all__ = ["MARKS_PATH", "SettledCheck", "batch_inputs_digest", "prime_output_marks", "record_settled"]
