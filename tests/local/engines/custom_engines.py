"""Engines used by the runner tests (imported inside worker processes)."""
from __future__ import annotations

import os
import sys
from typing import Any


def emits(mode: str, input: dict[str, Any], ctx: Any) -> Any:
    print("this goes to stderr, not into the worker protocol")
    for i in range(3):
        ctx.emit("checkpoint", {"n": i, "mode": mode})
    ctx.progress(0.5)
    return {"context": ctx.context, "input": input}


def crashes(mode: str, input: dict[str, Any], ctx: Any) -> Any:
    ctx.log("about to exit")
    sys.stdout.flush()
    os._exit(3)


def raises(mode: str, input: dict[str, Any], ctx: Any) -> Any:
    raise ValueError("bad things")
