"""`status` and `outputs` print in chunks without building every row: the bytes are exactly those
of the whole-text renderers, however the chunks fall."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobrunner.redact import REDACTED
from jobrunner.render.outputs import (
    outputs_text,
    outputs_text_chunks,
    recorded_outputs,
    status_rows,
    status_text,
    status_text_chunks,
)
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
STATUSES = ["succeeded", "failed", None, "running", "canceled", "weird-provider-status"]


def _doc(n: int) -> StateDoc:
    doc = StateDoc()
    for i in range(n):
        a = f"PredictionBatch/b[item-{i:03d}]" if i % 5 else f"Training/t{i}"
        status = STATUSES[i % len(STATUSES)]
        rid = None if status is None else f"r{i}" * (1 + i % 3)
        doc.addresses[a] = AddressState(
            address=a, kind=a.split("/")[0], job_kind="prediction" if "[" in a else "training", provider="local",
            file="b.yaml", remote_id=rid, status=status, attempts=i % 4,
            outputs={} if i % 7 == 3 else {"output": f"line {i}\nnext" if i % 2 else [i, {"b": 1, "a": "é"}],
                                           "api_token": "s3cret", "metrics": {"predict_time": i / 10}},
            history=[Attempt(remote_id=rid, fingerprint="f", attempt=1, status=status or "",
                             created_at=f"2026-01-0{1 + i % 2}T{i % 24:02d}:00:{i % 60:02d}.{i:06d}Z")] if rid else [],
            intent=Intent(fingerprint="f", attempt=2, created_at="2026-01-02T00:00:00Z", request_digest="d")
            if i % 11 == 4 else None)
    return doc


@pytest.mark.parametrize("n", [0, 1, 7, 40, 41])
@pytest.mark.parametrize("per_chunk", [1, 3, 40, 2000])
def test_status_chunks_are_the_whole_text(n: int, per_chunk: int) -> None:
    doc = _doc(n)
    chunks = list(status_text_chunks(doc, NOW, lines_per_chunk=per_chunk))
    assert "".join(chunks) == status_text(status_rows(doc, NOW)) + "\n"
    if n == 40 and per_chunk == 3:
        assert len(chunks) > 10


@pytest.mark.parametrize("n", [0, 1, 4, 40])
@pytest.mark.parametrize("per_chunk", [1, 2, 3, 2000])
@pytest.mark.parametrize("selected", [(), ("PredictionBatch/b",), ("Training/t0", "PredictionBatch/b[item-002]")])
def test_outputs_chunks_are_the_whole_text(n: int, per_chunk: int, selected: tuple[str, ...]) -> None:
    doc = _doc(n)
    text = "".join(outputs_text_chunks(doc, selected, lines_per_chunk=per_chunk))
    assert text == outputs_text(recorded_outputs(doc, selected)) + "\n"
    assert "s3cret" not in text and (n < 2 or f"api_token = {REDACTED}" in text)
