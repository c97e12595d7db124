"""The pure pieces of settled batches (jobrunner.settled): what the inputs digest covers, what a
proof demands of state, and that a settled batch's jobs are the jobs expansion makes."""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from jobrunner.providers.adapters.local_builtins import ECHO_VERSION
from jobrunner.resources import Resource
from jobrunner.settled import BatchMark, inputs_digest, prove, rows_digest
from jobrunner.spec import SettledJob, expand
from jobrunner.state.model import AddressState, Intent, StateDoc

ROWS = b'{"key": "a", "prompt": "one"}\n{"key": "b", "prompt": "two"}\n'


def _batch(name: str = "evals", file: str = "batch.yaml", **spec: Any) -> Resource:
    base = {"provider": "local", "version": ECHO_VERSION, "inputs_file": "prompts.jsonl"}
    return Resource(kind="PredictionBatch", name=name, spec={**base, **spec}, file=file, line=1)


def test_the_inputs_digest_changes_with_every_ingredient() -> None:
    first = inputs_digest(_batch(), ROWS)
    assert first is not None and first == inputs_digest(_batch(), ROWS)
    others = [
        inputs_digest(_batch(), ROWS.replace(b"two", b"tw0")),  # a row
        inputs_digest(_batch(), ROWS + b'{"key": "c", "prompt": "three"}\n'),  # an added row
        inputs_digest(_batch(), b"\n".join(reversed(ROWS.split(b"\n")[:2])) + b"\n"),  # reordered
        inputs_digest(_batch(name="other"), ROWS),  # renamed
        inputs_digest(_batch(file="sub/batch.yaml"), ROWS),  # the manifest moved
        inputs_digest(_batch(input_defaults={"seed": 1}), ROWS),  # the template
        inputs_digest(_batch(version="f" * 64), ROWS),  # the version
        inputs_digest(_batch(timeout="2h"), ROWS),  # anything else in the spec
    ]
    assert None not in others and len({first, *others}) == len(others) + 1


@pytest.mark.parametrize("res, rows", [
    (_batch(), b'{"key": "a", "prompt": {"$file": "x.txt"}}\n'),
    (_batch(), b'{"key": "a", "prompt": "${Training.t.output.version}"}\n'),
    (_batch(), b'{"key": "a", "prompt": "\\u0024{Training.t.output.version}"}\n'),
    (_batch(), b'{"key": "a", "prompt": "costs $5"}\n'),
    (_batch(version="${Training.t.output.version}"), ROWS),
    (_batch(webhook="https://example.com/h"), ROWS),
    (_batch(), None),  # an inputs_file without its bytes
    (Resource(kind="Training", name="t", spec={"provider": "local"}, file="t.yaml", line=1), None),
])
def test_batches_a_mark_cannot_cover(res: Resource, rows: bytes | None) -> None:
    assert inputs_digest(res, rows) is None


def _settled_state(res: Resource, keys: list[str], fps: list[str]) -> StateDoc:
    doc = StateDoc(lineage="t", serial=1)
    for key, fp in zip(keys, fps, strict=True):
        address = f"{res.address}[{key}]"
        doc.addresses[address] = AddressState(address=address, kind=res.kind, job_kind="prediction",
                                              provider="local", file=res.file, fingerprint=fp,
                                              remote_id=f"r-{key}", status="succeeded", attempts=1)
    return doc


def _mark(res: Resource, keys: list[str], fps: list[str], digest: str) -> BatchMark:
    addresses = [f"{res.address}[{k}]" for k in keys]
    return BatchMark(inputs=digest, keys=tuple(keys), rows=rows_digest(addresses, fps), written="00")


def test_a_proof_needs_every_row_recorded_succeeded_at_the_marked_fingerprint() -> None:
    res = _batch()
    digest = inputs_digest(res, ROWS)
    keys, fps = ["a", "b"], ["f" * 64, "e" * 64]
    mark = _mark(res, keys, fps, digest or "")
    doc = _settled_state(res, keys, fps)
    proof = prove(res, digest, mark, doc.addresses)
    assert proof is not None and proof.addresses == ("PredictionBatch/evals[a]", "PredictionBatch/evals[b]")
    assert proof.fingerprints == tuple(fps)

    def broken(change: Any) -> bool:
        other = _settled_state(res, keys, fps)
        change(other.addresses)
        return prove(res, digest, mark, other.addresses) is None

    assert broken(lambda a: a.pop("PredictionBatch/evals[b]"))
    assert broken(lambda a: setattr(a["PredictionBatch/evals[a]"], "status", "failed"))
    assert broken(lambda a: setattr(a["PredictionBatch/evals[a]"], "fingerprint", "d" * 64))
    assert broken(lambda a: setattr(a["PredictionBatch/evals[a]"], "remote_id", None))
    assert broken(lambda a: setattr(a["PredictionBatch/evals[b]"], "intent", Intent("f" * 64, 2, "t", "x")))
    assert prove(res, inputs_digest(res, ROWS + b"\n"), mark, doc.addresses) is None  # other bytes
    assert prove(res, None, mark, doc.addresses) is None
    assert prove(res, digest, replace(mark, keys=("b", "a")), doc.addresses) is None  # keys not as marked
    assert prove(_batch(name="other"), digest, mark, doc.addresses) is None


def test_marks_not_shaped_as_written_are_ignored() -> None:
    good = {"inputs": "x", "keys": ["a"], "rows": "y", "written": "z"}
    assert BatchMark.from_json(good) == BatchMark("x", ("a",), "y", "z")
    assert BatchMark.from_json(json.loads(json.dumps(BatchMark("x", ("a",), "y", "z").to_json()))) is not None
    bads: list[Any] = [None, [], {**good, "keys": "a"}, {**good, "keys": [1]}, {**good, "rows": None}, {"inputs": "x"}]
    for bad in bads:
        assert BatchMark.from_json(bad) is None


def test_a_settled_batchs_jobs_are_the_jobs_expansion_makes(tmp_path: Path) -> None:
    res = _batch(sensitive=["nothing"])
    (tmp_path / "prompts.jsonl").write_bytes(ROWS)
    full = expand([res], tmp_path)
    doc = _settled_state(res, ["a", "b"], [j.fingerprint or "" for j in full])
    digest = inputs_digest(res, ROWS)
    proof = prove(res, digest, _mark(res, ["a", "b"], [j.fingerprint or "" for j in full], digest or ""),
                  doc.addresses)
    assert proof is not None
    settled = expand([res], tmp_path, state=doc, settled={res.address: proof})
    assert all(type(j) is SettledJob for j in settled)
    for made, want in zip(settled, full, strict=True):
        for f in fields(want):
            assert getattr(made, f.name) == getattr(want, f.name), f.name
    # dataclasses.replace keeps working (a value given is kept, the rest read as before)
    moved = replace(settled[0], request={"x": 1})
    assert moved.request == {"x": 1} and moved.material == full[0].material
