"""`status --format json` and `outputs --format json` print in pieces: the bytes are exactly those
of encoding the whole document at once, however the pieces fall."""
from __future__ import annotations

import json
from typing import Any

import pytest

from jobrunner.render.outputs import (
    outputs_json,
    outputs_json_chunks,
    recorded_outputs,
    status_json,
    status_json_chunks,
    status_rows,
)
from jobrunner.state.model import AddressState, StateDoc
from tests.render.test_render_streamed import NOW, _doc


def _odd_doc() -> StateDoc:
    """Keys and values the indented encoder escapes, nests or writes inline."""
    doc = _doc(9)
    odd: list[tuple[str, dict[str, Any]]] = [
        ("Training/ünï \"q\"", {"output": {"x": [], "y": {}, "z": [1, [2, {}]]}, "n": 1.5e300}),
        ("Training/t\\n", {"a\nb": "c\td", "": None, "e": ["é", True, -0.0]}),
    ]
    for a, outs in odd:
        doc.addresses[a] = AddressState(address=a, kind="Training", job_kind="training", provider="local",
                                        file="t.yaml", status="succeeded", outputs=outs)
    return doc


@pytest.mark.parametrize("doc", [_doc(0), _doc(1), _doc(40), _odd_doc()], ids=["0", "1", "40", "odd"])
@pytest.mark.parametrize("per_chunk", [1, 3, 1000])
def test_status_json_pieces_are_the_whole_document(doc: StateDoc, per_chunk: int) -> None:
    text = "".join(status_json_chunks(doc, NOW, rows_per_chunk=per_chunk))
    assert text == status_json(status_rows(doc, NOW))
    assert json.loads(text)["addresses"] == status_rows(doc, NOW)


@pytest.mark.parametrize("doc", [_doc(0), _doc(1), _doc(40), _odd_doc()], ids=["0", "1", "40", "odd"])
@pytest.mark.parametrize("per_chunk", [1, 3, 1000])
@pytest.mark.parametrize("selected", [(), ("PredictionBatch/b",), ("Training/nothing-here",)])
def test_outputs_json_pieces_are_the_whole_document(doc: StateDoc, per_chunk: int, selected: tuple[str, ...]) -> None:
    text = "".join(outputs_json_chunks(doc, selected, per_chunk=per_chunk))
    assert text == outputs_json(recorded_outputs(doc, selected))
    assert "s3cret" not in text


def _settled_doc(n: int, odd: dict[str, Any] | None = None) -> StateDoc:
    """Outputs with nothing to hide (the fast path), and one address with `odd` outputs."""
    doc = StateDoc()
    for i in range(n):
        a = f"PredictionBatch/b[item-{i:03d}]"
        doc.addresses[a] = AddressState(address=a, kind="PredictionBatch", job_kind="prediction", provider="local",
                                        file="b.yaml", status="succeeded",
                                        outputs={"output": {"text": f"t{i}", "n": [i]}, "metrics": {"t": i / 7}})
    if odd is not None:
        doc.addresses["Training/x"] = AddressState(address="Training/x", kind="Training", job_kind="training",
                                                   provider="local", file="t.yaml", status="succeeded", outputs=odd)
    return doc


@pytest.mark.parametrize("odd", [None, {"\u212aey": "v"}, {"url": "https://u:pw@host/x"}, {"note": "ünï"}],
                         ids=["plain", "kelvin-key", "userinfo", "non-ascii"])
@pytest.mark.parametrize("per_chunk", [1, 4, 1000])
def test_outputs_json_redacts_exactly_what_the_whole_document_redacts(odd: dict[str, Any] | None,
                                                                      per_chunk: int) -> None:
    doc = _settled_doc(9, odd)
    text = "".join(outputs_json_chunks(doc, per_chunk=per_chunk))
    assert text == outputs_json(recorded_outputs(doc))
    assert "pw@" not in text and ('"v"' not in text or odd != {"\u212aey": "v"})
