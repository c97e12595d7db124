"""The `ngram_finetune` engine: the Emissary wire's `jobrunner-ngram` base model, fine-tuned for real.

An Emissary training job names a base model, a training dataset and optionally a test dataset or
a split ratio. For `jobrunner-ngram` the platform runs this engine in a worker process: it builds
the same character n-gram model as `jobrunner/ngram` (the functions of
`jobrunner.local.engines.ngram`) step by step, reports progress, a training loss per step, and
writes a checkpoint every `checkpoint_every` steps with the loss and perplexity on the test split.

Training parameters (the request's `parameters`; values are str/int/float on the wire):

| key                | default | meaning |
|--------------------|---------|---------|
| `order`            | 4       | n-gram order, 1..10 |
| `steps`            | 10      | training steps; the training text is fed in `steps` equal chunks per epoch |
| `epochs`           | 1       | passes over the training text (counts accumulate) |
| `checkpoint_every` | 5       | a checkpoint after every this many steps, and always one at the end |
| `step_seconds`     | 0       | pause after each step (to watch progress or exercise cancel) |
| `eval_chars`       | 2000    | at most this many test characters are scored per checkpoint |

Datasets: JSONL (one JSON object per line: `text`, `prompt` + `completion`, `messages[].content`,
else every string value) or plain text. The test split is `test_dataset_id` when given, else the
last `train_test_split_ratio` fraction of the training text (default 0.1).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jobrunner.local.engines import ModelError, RunContext
from jobrunner.local.engines.ngram import DEFAULT_ORDER, MAX_ORDER, MIN_ORDER, NgramModel, evaluate, weights_bytes

BASE_MODEL = "jobrunner-ngram"
DEFAULTS: dict[str, float | int] = {
    "order": DEFAULT_ORDER,
    "steps": 10,
    "epochs": 1,
    "checkpoint_every": 5,
    "step_seconds": 0,
    "eval_chars": 2000,
}
DEFAULT_SPLIT = 0.1


# --- pure helpers ---------------------------------------------------------------------------


def dataset_text(raw: bytes) -> str:
    """The training text of a dataset file: JSONL records' text fields, or the file as text."""
    text = raw.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    records: list[Any] = []
    for ln in lines:
        try:
            records.append(json.loads(ln))
        except ValueError:
            return text  # not JSONL: plain text
    if not all(isinstance(r, dict) for r in records):
        return text
    return "".join(_record_text(r) + "\n" for r in records)


def _record_text(rec: dict[str, Any]) -> str:
    if isinstance(rec.get("text"), str):
        return rec["text"]
    if isinstance(rec.get("prompt"), str) or isinstance(rec.get("completion"), str):
        return f"{rec.get('prompt') or ''}{rec.get('completion') or ''}"
    msgs = rec.get("messages")
    if isinstance(msgs, list):
        return "\n".join(m["content"] for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), str))
    return " ".join(v for v in rec.values() if isinstance(v, str))


def training_parameters(parameters: dict[str, Any] | None) -> dict[str, float | int]:
    """The engine's parameters with defaults applied; raises ValueError naming a bad one."""
    params = dict(DEFAULTS)
    for key, value in (parameters or {}).items():
        if key not in DEFAULTS:
            continue  # tolerated, as the Emissary API does (e.g. learning_rate): no meaning here
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameters.{key} must be a number, got {value!r}") from None
        params[key] = num if key == "step_seconds" else int(num)
    if not MIN_ORDER <= int(params["order"]) <= MAX_ORDER:
        raise ValueError(f"parameters.order must be between {MIN_ORDER} and {MAX_ORDER}")
    for key in ("steps", "epochs", "checkpoint_every", "eval_chars"):
        if int(params[key]) < 1:
            raise ValueError(f"parameters.{key} must be at least 1")
    if not 0 <= float(params["step_seconds"]) <= 60:
        raise ValueError("parameters.step_seconds must be between 0 and 60")
    return params


def split(text: str, ratio: float | None) -> tuple[str, str]:
    """(train, test) with the last `ratio` of the text held out for testing."""
    r = DEFAULT_SPLIT if ratio is None else float(ratio)
    cut = len(text) - int(len(text) * r)
    if r > 0 and cut >= len(text):
        cut = len(text) - 1
    return text[:cut], text[cut:]


def test_results(metrics: dict[str, float], results_url: str | None) -> dict[str, Any]:
    # aggregated_test_result values must be strings in SDK 0.4.4 (numbers fail its validation).
    out: dict[str, Any] = {"aggregated_test_result": {k: f"{v:.6g}" for k, v in metrics.items()}}
    if results_url:
        out["general_test_result"] = results_url
    return out


# --- engine ---------------------------------------------------------------------------------


def run(mode: str, input: dict[str, Any], ctx: RunContext) -> Any:
    """Worker entry point. `input` = {"parameters", "train_test_split_ratio"}; `ctx.context` holds
    the server-resolved dataset paths and the checkpoint directory."""
    if mode != "train":
        raise ModelError(f"{BASE_MODEL} has no {mode} mode on the Emissary wire")
    try:
        params = training_parameters(input.get("parameters"))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    c = ctx.context
    text = dataset_text(_read(c["train_path"], "training"))
    if c.get("test_path"):
        train_text, test_text = text, dataset_text(_read(c["test_path"], "test"))
    else:
        train_text, test_text = split(text, input.get("train_test_split_ratio"))
    if not train_text:
        raise ModelError("the training dataset holds no text")
    test_text = test_text[: int(params["eval_chars"])]
    ckpt_dir = Path(c["checkpoint_dir"])
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    steps, epochs, every = int(params["steps"]), int(params["epochs"]), int(params["checkpoint_every"])
    total = steps * epochs
    chunk = max(1, -(-len(train_text) // steps))
    model = NgramModel(int(params["order"]))
    ctx.log(
        f"{BASE_MODEL}: order {params['order']}, {len(train_text)} training and {len(test_text)} test characters, "
        f"{total} steps, a checkpoint every {every}"
    )
    step = 0
    checkpoint = 0
    for _epoch in range(epochs):
        for i in range(steps):
            if ctx.cancelled():
                return {"cancelled_at_step": step}
            piece = train_text[i * chunk : (i + 1) * chunk]
            # Online training loss: how well the model so far predicts the chunk it is about to learn.
            sample = piece[:300]
            loss = evaluate(model.to_weights(), sample)["loss"] if step and sample else None
            model.update(piece)
            step += 1
            ctx.progress(step / total)
            if loss is not None:
                ctx.emit("training_loss", {"timestamp": time.time(), "loss": loss})
            if step % every == 0 or step == total:
                checkpoint += 1
                _write_checkpoint(ctx, model, test_text, ckpt_dir, checkpoint, step)
            if params["step_seconds"]:
                _pause(ctx, float(params["step_seconds"]))
    return {"steps": step, "checkpoints": checkpoint}


def _read(path: str, which: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # deleted while the job waited for a worker; never show server paths
        raise ModelError(f"the {which} dataset is no longer available (was it deleted?)") from None


def _write_checkpoint(ctx: RunContext, model: NgramModel, test_text: str, ckpt_dir: Path, n: int, step: int) -> None:
    weights = model.to_weights()
    path = ckpt_dir / f"checkpoint-{n}.json"
    path.write_bytes(weights_bytes(weights))
    metrics = evaluate(weights, test_text) if test_text else {}
    (ckpt_dir / f"checkpoint-{n}-test_results.json").write_text(
        json.dumps({"checkpoint": n, "step": step, "test_characters": len(test_text), **metrics}), encoding="utf-8"
    )
    ctx.log(f"checkpoint {n} at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    ctx.emit("checkpoint", {"checkpoint": n, "step": step, "path": str(path), "metrics": metrics})


def _pause(ctx: RunContext, seconds: float) -> None:
    """Sleep in short slices so a cancel is noticed within a fraction of a second."""
    end = time.monotonic() + seconds
    while not ctx.cancelled():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))
