"""The Emissary wire's base models on the local platform, and the engine each one trains with.

`jobrunner-ngram` is a completion model: a character n-gram model fine-tuned for real by the
`ngram_finetune` engine (`jobrunner.local.engines.ngram_finetune`, which documents its parameters).
"""
from __future__ import annotations

from typing import Any

from jobrunner.local.engines import ngram_finetune

USER_ID = "me"  # the local account, as on the Replicate wire
BASE_MODEL = ngram_finetune.BASE_MODEL
ENGINE = "ngram_finetune"  # an `engines.ENGINES` name

# The project every platform has from its first start (re-created at start if deleted), so an
# Emissary manifest can name a `project_id` that works offline with no setup, as the built-in
# models do on the Replicate wire (specs/pipelines/emissary/ trains in it). Fixed, like its id.
SEEDED_PROJECT_ID = "ms-local"
SEEDED_PROJECT_NAME = "local"

BASE_MODELS: dict[str, dict[str, Any]] = {
    BASE_MODEL: {
        "name": BASE_MODEL,
        "type": "completion",
        "parameter_template": dict(ngram_finetune.DEFAULTS),
        "support_serverless": True,
        # Extra fields are ignored by the SDK; they tell a reader what the model is.
        "description": "A character n-gram language model trained on this machine (jobrunner local platform).",
    }
}
