"""`jobrunner/echo`: the output is the input. Fast enough to run inline in the server."""
from __future__ import annotations

from typing import Any

from jobrunner.local.engines import RunContext


def run(mode: str, input: dict[str, Any], ctx: RunContext) -> Any:
    return input
