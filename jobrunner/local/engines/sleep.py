"""`jobrunner/sleep`: waits `seconds`, logs `log_lines` tqdm progress lines (`45%|####      | 9/20
[...]`, what the official client parses into `prediction.progress`), fails on request (quoting
`message` in its error, as real models quote their input). For tests."""
from __future__ import annotations

import time
from typing import Any

from jobrunner.local.engines import ModelError, RunContext, progress_line


def run(mode: str, input: dict[str, Any], ctx: RunContext) -> Any:
    seconds = float(input.get("seconds", 1.0))
    lines = int(input.get("log_lines", 0))
    steps = max(lines, 1)
    ctx.log(f"sleeping {seconds:g}s")
    started = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        if lines:
            ctx.log(progress_line(step, lines, time.monotonic() - started))
        ctx.progress(step / steps)
    if input.get("fail"):
        message = input.get("message")
        raise ModelError("sleep: failed on request (fail=true)" + (f": {message}" if message else ""))
    return {"slept": seconds}
