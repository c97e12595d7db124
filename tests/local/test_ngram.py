"""The n-gram engine as plain functions (shared by both wire formats)."""
from __future__ import annotations

import math

import pytest

from jobrunner.local.engines import ModelError
from jobrunner.local.engines.ngram import NgramModel, base_weights, embed, evaluate, generate, train

TEXT = "the cat sat on the mat. the dog sat on the log. " * 20


def test_generation_is_deterministic_for_a_seed_and_varies_across_seeds():
    weights = train(TEXT, 4)
    a = generate(weights, "the ", 80, 1.0, seed=42)
    assert a == generate(weights, "the ", 80, 1.0, seed=42)
    assert len(a) == 80
    assert a != generate(weights, "the ", 80, 1.0, seed=43)
    assert set(a) <= set(TEXT)


def test_greedy_generation_follows_the_training_text():
    weights = train("abcabcabcabcabc", 3)
    assert generate(weights, "ab", 6, temperature=0) == "cabcab"


def test_perplexity_is_lower_on_similar_text_and_finite_on_unseen_characters():
    weights = train(TEXT, 5)
    similar = evaluate(weights, "the cat sat on the log.")
    different = evaluate(weights, "zebras quietly vex jumping wolves")
    assert similar["perplexity"] < different["perplexity"]
    assert math.isfinite(different["perplexity"])
    assert similar["loss"] == pytest.approx(math.log(similar["perplexity"]), rel=1e-4)


def test_stepwise_training_equals_one_shot_training():
    model = NgramModel(4)
    for i in range(0, len(TEXT), 37):
        model.update(TEXT[i : i + 37])
    assert model.to_weights()["counts"] == train(TEXT, 4)["counts"]
    restored = NgramModel.from_weights(model.to_weights())
    assert restored.counts == model.counts and restored.order == 4


def test_invalid_order_and_empty_text():
    with pytest.raises(ModelError):
        NgramModel(0)
    with pytest.raises(ModelError):
        NgramModel(11)
    with pytest.raises(ModelError):
        train("", 3)


def test_embed_gives_unit_vectors_over_the_vocabulary_and_alike_texts_are_closer() -> None:
    weights = base_weights()
    moon, sea, noise = (embed(weights, t) for t in ("the moon rises", "the moon rises over the sea", "zzqx"))
    assert len(moon) == len(weights["vocab"]) and abs(sum(v * v for v in moon) - 1) < 1e-4
    assert embed(weights, "the moon rises") == moon  # deterministic

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(moon, sea) > cos(moon, noise)
    assert embed(weights, "") and embed({**weights, "vocab": "", "counts": {}}, "x") == []
