"""`jobrunner/ngram`: a character n-gram language model that really trains and generates.

Plain functions, reused by both wire formats:

- `NgramModel(order)`: `update(text)` adds counts (call it repeatedly to train in steps),
  `to_weights()` / `from_weights(w)` convert to and from the JSON-serializable weights.
- `train(text, order) -> weights`, `generate(weights, prompt, max_tokens, temperature, seed) -> str`
  (identical output for the same seed), `evaluate(weights, text) -> {"loss", "perplexity"}`
  (mean negative log-likelihood per character in nats, and its exponential).

Probabilities use Witten-Bell interpolation from the longest context down to a uniform
distribution over the vocabulary (plus one unseen symbol), so held-out text never gets zero
probability and the perplexity is finite.

`run(mode, input, ctx)` is the engine entry point used by the local platform's workers.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from jobrunner.local.engines import ModelError, RunContext, progress_line

WEIGHTS_FORMAT = "jobrunner-ngram/1"
MIN_ORDER, MAX_ORDER, DEFAULT_ORDER = 1, 10, 4

# A small built-in corpus, so the base version `jobrunner/ngram` can generate before any training.
BASE_CORPUS = (
    "The quick brown fox jumps over the lazy dog. The moon rises over the quiet sea, and the "
    "stars answer with a slow light. At dawn the birds begin again; at dusk the river keeps its "
    "counsel. Small models learn the shape of words from the letters that came before them.\n"
)


class NgramModel:
    """Counts of the next character after every context of length 0..order-1."""

    def __init__(self, order: int = DEFAULT_ORDER) -> None:
        if not MIN_ORDER <= order <= MAX_ORDER:
            raise ModelError(f"order must be between {MIN_ORDER} and {MAX_ORDER}, got {order}")
        self.order = order
        self.counts: dict[str, dict[str, int]] = {}
        self.vocab: set[str] = set()
        self.characters = 0
        self._tail = ""  # the last order-1 characters seen, so stepwise updates join up

    def update(self, text: str) -> None:
        history = self._tail
        counts = self.counts
        n = self.order
        for ch in text:
            self.vocab.add(ch)
            for k in range(0, min(n - 1, len(history)) + 1):
                ctx = history[len(history) - k :] if k else ""
                bucket = counts.setdefault(ctx, {})
                bucket[ch] = bucket.get(ch, 0) + 1
            history = (history + ch)[-(n - 1) :] if n > 1 else ""
        self._tail = history
        self.characters += len(text)

    def to_weights(self) -> dict[str, Any]:
        return {
            "format": WEIGHTS_FORMAT,
            "order": self.order,
            "characters": self.characters,
            "vocab": "".join(sorted(self.vocab)),
            "counts": self.counts,
        }

    @classmethod
    def from_weights(cls, weights: dict[str, Any]) -> NgramModel:
        if weights.get("format") != WEIGHTS_FORMAT:
            raise ModelError(f"not {WEIGHTS_FORMAT} weights")
        model = cls(int(weights["order"]))
        model.counts = {ctx: dict(nexts) for ctx, nexts in weights["counts"].items()}
        model.vocab = set(weights["vocab"])
        model.characters = int(weights.get("characters", 0))
        return model

    # --- probabilities ---------------------------------------------------------------

    def distribution(self, history: str) -> dict[str, float]:
        """P(next char | history) over the vocabulary, Witten-Bell interpolated."""
        vocab = sorted(self.vocab)
        size = len(vocab) + 1
        probs = {ch: 1.0 / size for ch in vocab}
        start = max(0, len(history) - (self.order - 1))
        contexts = [history[i:] for i in range(len(history), start - 1, -1)]  # "", then longer
        for ctx in contexts:
            bucket = self.counts.get(ctx)
            if not bucket:
                continue
            total = sum(bucket.values())
            types = len(bucket)
            lam = total / (total + types)
            for ch in probs:
                probs[ch] = lam * (bucket.get(ch, 0) / total) + (1 - lam) * probs[ch]
        return probs

    def prob(self, history: str, ch: str) -> float:
        dist = self.distribution(history)
        return dist.get(ch) or _unseen(dist)


def _unseen(dist: dict[str, float]) -> float:
    """Probability mass left for a character outside the vocabulary."""
    return max(1.0 - sum(dist.values()), 1e-12)


def train(text: str, order: int = DEFAULT_ORDER) -> dict[str, Any]:
    if not text:
        raise ModelError("train_data is empty")
    model = NgramModel(order)
    model.update(text)
    return model.to_weights()


def generate(
    weights: dict[str, Any], prompt: str = "", max_tokens: int = 100, temperature: float = 1.0, seed: int | None = None
) -> str:
    """Continue `prompt` by `max_tokens` characters; the same seed gives the same text."""
    model = NgramModel.from_weights(weights)
    if not model.vocab:
        return ""
    rng = random.Random(seed)
    history = prompt
    out: list[str] = []
    for _ in range(max_tokens):
        dist = model.distribution(history)
        chars = sorted(dist)
        if temperature <= 0:
            ch = max(chars, key=lambda c: dist[c])
        else:
            scaled = [dist[c] ** (1.0 / temperature) for c in chars]
            ch = rng.choices(chars, weights=scaled, k=1)[0]
        out.append(ch)
        history = (history + ch)[-MAX_ORDER:]
    return "".join(out)


def evaluate(weights: dict[str, Any], text: str) -> dict[str, float]:
    """Mean per-character negative log-likelihood (nats) of `text`, and the perplexity."""
    model = NgramModel.from_weights(weights)
    if not text:
        return {"loss": 0.0, "perplexity": 1.0}
    nll = 0.0
    history = ""
    for ch in text:
        dist = model.distribution(history)
        p = dist.get(ch) or _unseen(dist)
        nll -= math.log(p)
        history = (history + ch)[-MAX_ORDER:]
    loss = nll / len(text)
    return {"loss": round(loss, 6), "perplexity": round(math.exp(loss), 6)}


def embed(weights: dict[str, Any], text: str) -> list[float]:
    """A unit vector for `text`: the model's mean next-character distribution after each of its
    characters, over the sorted vocabulary.

    Texts the model reads alike (the same contexts, so the same expectations of what follows) get
    close vectors; the dimension is the model's vocabulary size.
    """
    model = NgramModel.from_weights(weights)
    vocab = sorted(model.vocab)
    if not vocab:
        return []
    sums = [0.0] * len(vocab)
    histories = [text[max(0, i + 1 - MAX_ORDER) : i + 1] for i in range(len(text))] or [""]
    for history in histories:
        dist = model.distribution(history)
        for j, ch in enumerate(vocab):
            sums[j] += dist[ch]
    norm = math.sqrt(sum(v * v for v in sums)) or 1.0
    return [round(v / norm, 6) for v in sums]


def weights_bytes(weights: dict[str, Any]) -> bytes:
    return json.dumps(weights, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def base_weights() -> dict[str, Any]:
    return train(BASE_CORPUS, DEFAULT_ORDER)


# --- engine entry point ------------------------------------------------------------------


def run(mode: str, input: dict[str, Any], ctx: RunContext) -> Any:
    if mode == "train":
        return _run_train(input, ctx)
    return _run_predict(input, ctx)


def _run_train(input: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    text = ctx.context.get("train_text")
    if text is None:
        path = ctx.context.get("train_text_path")
        if not path:
            raise ModelError("train_data is required")
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    order = int(input.get("order", DEFAULT_ORDER))
    ctx.log(f"training a character {order}-gram model on {len(text)} characters")
    model = NgramModel(order)
    started = time.monotonic()
    chunk = max(1, len(text) // 10)
    for i in range(0, len(text), chunk):
        model.update(text[i : i + chunk])
        done = min(len(text), i + chunk)
        ctx.progress(done / len(text))
        ctx.log(progress_line(done, len(text), time.monotonic() - started, unit="char"))
    weights = model.to_weights()
    data = weights_bytes(weights)
    Path(ctx.context["weights_path"]).write_bytes(data)
    ctx.log(f"vocabulary {len(model.vocab)} characters, {len(model.counts)} contexts; weights {len(data)} bytes")
    return {"order": order, "characters": len(text), "weights_sha256": hashlib.sha256(data).hexdigest()}


def _run_predict(input: dict[str, Any], ctx: RunContext) -> str:
    path = ctx.context.get("weights_path")
    weights = json.loads(Path(path).read_bytes()) if path else base_weights()
    prompt = str(input.get("prompt", ""))
    max_tokens = int(input.get("max_tokens", 100))
    temperature = float(input.get("temperature", 1.0))
    seed = input.get("seed")
    ctx.log(f"generating {max_tokens} characters (temperature {temperature:g}, seed {seed})")
    return generate(weights, prompt, max_tokens, temperature, None if seed is None else int(seed))
