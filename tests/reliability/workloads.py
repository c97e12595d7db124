"""Manifests the reliability suites apply: trainings, prediction batches and slow jobs on the local
platform's built-in models (echo, ngram, sleep), sized by the caller."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tests.reliability.harness import ECHO, NGRAM, SLEEP

POEM = ("Tyger Tyger, burning bright, In the forests of the night; What immortal hand or eye, "
        "Could frame thy fearful symmetry? ") * 4


def write_workload(root: Path, tag: str, *, predictions: int, trainings: int, slow: int = 0,
                   output_file: bool = False, slow_seconds: float = 1.5) -> set[str]:
    """Write `jobs.yaml`; returns the addresses apply must converge (every one must succeed)."""
    docs: list[str] = []
    expected: set[str] = set()
    if trainings:
        docs.append(f"kind: Model\nmetadata: {{name: dest}}\nspec:\n  provider: local\n  owner: me\n"
                    f"  name: rel-{tag}\n  visibility: private\n  hardware: cpu\n")
        expected.add("Model/dest")
    for i in range(trainings):
        docs.append(f"kind: Training\nmetadata: {{name: train-{i}}}\nspec:\n  provider: local\n"
                    f"  model: jobrunner/ngram\n  version: {NGRAM}\n  destination: me/rel-{tag}\n"
                    f"  input:\n    train_data: \"{POEM} {tag} {i}\"\n    order: 3\n"
                    "  retry: {max_attempts: 1}\n")
        expected.add(f"Training/train-{i}")
    if predictions:
        rows = "".join(f"    - {{key: p{i}, text: \"{tag}\", n: {i}}}\n" for i in range(predictions))
        out = "  output_file: out/echo.jsonl\n" if output_file else ""
        docs.append(f"kind: PredictionBatch\nmetadata: {{name: echo}}\nspec:\n  provider: local\n"
                    f"  version: {ECHO}\n{out}  inputs:\n{rows}")
        expected |= {f"PredictionBatch/echo[p{i}]" for i in range(predictions)}
    if slow:
        # A sleep input cannot carry a tag: a unique duration keeps runs of different tests apart.
        seconds = slow_seconds + int(hashlib.sha256(tag.encode()).hexdigest()[:6], 16) % 100000 / 1e7
        rows = "".join(f"    - {{key: s{i}, seconds: {seconds + i / 1e8!r}, log_lines: 3}}\n" for i in range(slow))
        docs.append(f"kind: PredictionBatch\nmetadata: {{name: slow}}\nspec:\n  provider: local\n"
                    f"  version: {SLEEP}\n  inputs:\n{rows}")
        expected |= {f"PredictionBatch/slow[s{i}]" for i in range(slow)}
    text = "".join("---\napiVersion: jobrunner/v1\n" + d for d in docs)
    (root / "jobs.yaml").write_text(text, encoding="utf-8")
    return expected
