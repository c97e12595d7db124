"""`jobrunner/echo`: the output is the input. Fast enough to run inline in the server."""
from __future__ import annotations

from typing import Any


def run(mode: str, input: dict[str, Any], ctx: Any) -> Any:
    return input
