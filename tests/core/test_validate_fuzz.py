"""Mutated manifests never crash the loader or the validator: bad input gets diagnostics, not tracebacks."""
from __future__ import annotations

import random
from pathlib import Path

from jobrunner.loader import load_text
from jobrunner.validate import validate_documents

REPO = Path(__file__).resolve().parents[2]
TOKENS = [
    "~", "null", "[]", "{}", "on", "1.10", "${Training.x.output.version}", "${", "{$file: /etc/passwd}",
    "{$file: 3}", "- x", ": ", "&a", "*a", "<<: *a", '"', "'", "\t", "0x1f", "1:30", "-", "?", "!!binary x",
    "2024-01-01", "{key: [1]}", "inputs_file: x.csv", "{$file: data/poems.txt, x: 1}", "9" * 30, ".nan", "-.inf",
    "[{key: a}, {key: a}]", "{provider: emissary}", "${Model.poems.output.name}",
]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        j = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.4 and ":" in lines[j]:
            lines[j] = lines[j][: lines[j].index(":") + 1] + " " + rng.choice(TOKENS)
        elif op < 0.6 and len(lines) > 1:
            del lines[j]
        elif op < 0.8:
            lines.insert(j, lines[rng.randrange(len(lines))])
        else:
            lines[j] = lines[j][: rng.randrange(len(lines[j]) + 1)]
    return "\n".join(lines)


def test_mutations_of_the_examples_and_corpus_never_crash() -> None:
    sources = [p.read_text(encoding="utf-8") for p in sorted((REPO / "specs").rglob("*.yaml"))]
    sources += [
        p.read_bytes().decode("utf-8", "replace") for p in sorted((REPO / "tests/manifests/cases").glob("*.yaml"))
    ]
    rng = random.Random(20240501)
    checked = with_errors = 0
    for _ in range(600):
        text = mutate(rng.choice(sources), rng)
        loaded = load_text(text, "specs/examples/fuzz.yaml")
        result = validate_documents(loaded.documents, REPO)
        diagnostics = loaded.diagnostics + result.diagnostics
        with_errors += bool(diagnostics)
        for d in diagnostics:
            assert d.line >= 1 and d.column >= 1 and d.message, text
            d.format()
            checked += 1
    # The loop above checks nothing for a mutation that stays valid: make sure most did not.
    print(f"{with_errors} of 600 mutations reported {checked} diagnostics")
    assert with_errors >= 500 and checked >= 600
