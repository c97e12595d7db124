"""The `jobrunner-ngram` Emissary training engine, run in-process with a recording context."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from jobrunner.local.engines import ModelError
from jobrunner.local.engines import ngram_finetune as eng

POEM = (
    "The moon rises over the quiet sea, and the stars answer with a slow light. "
    "At dawn the birds begin again; at dusk the river keeps its counsel. "
) * 20


class Ctx:
    def __init__(self, context: dict[str, Any], cancel_after: int | None = None) -> None:
        self.context = context
        self.logs: list[str] = []
        self.progress_values: list[float] = []
        self.events: list[tuple[str, Any]] = []
        self.cancel_after = cancel_after

    def log(self, line: str) -> None:
        self.logs.append(line)

    def progress(self, fraction: float) -> None:
        self.progress_values.append(fraction)

    def emit(self, kind: str, data: Any) -> None:
        self.events.append((kind, data))

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.progress_values) >= self.cancel_after


def test_dataset_text_reads_jsonl_fields_and_plain_text() -> None:
    jsonl = (
        b'{"text": "one"}\n{"prompt": "Q: ", "completion": "A"}\n{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    assert eng.dataset_text(jsonl) == "one\nQ: A\nhi\n"
    assert eng.dataset_text(b"just words\nand more\n") == "just words\nand more\n"
    assert eng.dataset_text(b"") == ""


def test_parameters_have_defaults_and_are_checked() -> None:
    p = eng.training_parameters({"checkpoint_every": "2", "learning_rate": 0.1})
    assert p["checkpoint_every"] == 2 and p["steps"] == 10 and "learning_rate" not in p
    with pytest.raises(ValueError, match="parameters.order"):
        eng.training_parameters({"order": 11})
    with pytest.raises(ValueError, match="parameters.steps"):
        eng.training_parameters({"steps": "lots"})


def test_training_writes_checkpoints_with_test_metrics(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": line}) + "\n" for line in POEM.split(". ")), encoding="utf-8")
    ctx = Ctx({"train_path": str(train), "checkpoint_dir": str(tmp_path / "ck")})
    out = eng.run(
        "train", {"parameters": {"steps": 6, "checkpoint_every": 4, "order": 3}, "train_test_split_ratio": 0.2}, ctx
    )
    assert out == {"steps": 6, "checkpoints": 2}
    ckpts = [d for k, d in ctx.events if k == "checkpoint"]
    assert [c["checkpoint"] for c in ckpts] == [1, 2] and [c["step"] for c in ckpts] == [4, 6]
    for c in ckpts:
        weights = json.loads(Path(c["path"]).read_text())
        assert weights["order"] == 3 and weights["counts"]
        assert math.isfinite(c["metrics"]["perplexity"]) and c["metrics"]["perplexity"] > 1
    # A model that has seen more of a repetitive text predicts the held-out part at least as well.
    assert ckpts[1]["metrics"]["loss"] <= ckpts[0]["metrics"]["loss"]
    assert ctx.progress_values[-1] == 1.0 and ctx.progress_values == sorted(ctx.progress_values)
    assert len([k for k, _ in ctx.events if k == "training_loss"]) == 5
    results = eng.test_results(ckpts[0]["metrics"], "http://x/results.json")
    assert all(isinstance(v, str) for v in results["aggregated_test_result"].values())


def test_cancel_stops_between_steps(tmp_path: Path) -> None:
    train = tmp_path / "t.txt"
    train.write_text(POEM, encoding="utf-8")
    ctx = Ctx({"train_path": str(train), "checkpoint_dir": str(tmp_path / "ck")}, cancel_after=2)
    out = eng.run("train", {"parameters": {"steps": 10}}, ctx)
    assert out == {"cancelled_at_step": 2}


def test_empty_dataset_fails_with_a_model_error(tmp_path: Path) -> None:
    train = tmp_path / "empty.jsonl"
    train.write_bytes(b"")
    with pytest.raises(ModelError, match="no text"):
        eng.run("train", {}, Ctx({"train_path": str(train), "checkpoint_dir": str(tmp_path)}))


def test_a_deleted_dataset_fails_without_showing_server_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        eng.run("train", {}, Ctx({"train_path": str(tmp_path / "gone"), "checkpoint_dir": str(tmp_path)}))
    assert "no longer available" in str(err.value) and str(tmp_path) not in str(err.value)
