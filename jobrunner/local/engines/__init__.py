"""The local platform's engines (the code that runs a job, for either wire) and how a worker finds them.

An engine is a plain function `run(mode, input, ctx) -> output` where `mode` is "predict" or
"train", `input` the job's validated input, and `ctx` a `RunContext` (logs, progress, extra events,
and `ctx.context`: server-resolved values such as file paths, never taken from the client).
Engines are named by a short name from `ENGINES` or by any importable `"module:function"` path,
so tests can run their own engine functions in the same worker processes.

| name             | module           | used by |
|------------------|------------------|---------|
| `echo`           | `echo`           | Replicate model `jobrunner/echo` |
| `sleep`          | `sleep`          | Replicate model `jobrunner/sleep` |
| `ngram`          | `ngram`          | Replicate model `jobrunner/ngram` and its trained versions |
| `ngram_finetune` | `ngram_finetune` | Emissary base model `jobrunner-ngram` |

Engines log their progress as tqdm lines (`progress_line`): that is what models on Replicate print,
and what the official `replicate` client parses into `prediction.progress`.

`INLINE` engines are trivially fast and pure (echo): the runner calls them in the server process
instead of paying a process round trip per job.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol


class ModelError(Exception):
    """A failure the model reports on purpose; its message becomes the job's `error` verbatim."""


class RunContext(Protocol):
    context: dict[str, Any]

    def log(self, line: str) -> None: ...

    def progress(self, fraction: float) -> None: ...

    def emit(self, kind: str, data: Any) -> None: ...

    def cancelled(self) -> bool: ...


Engine = Callable[[str, dict[str, Any], RunContext], Any]

ENGINES: dict[str, str] = {
    "echo": "jobrunner.local.engines.echo:run",
    "ngram": "jobrunner.local.engines.ngram:run",
    "ngram_finetune": "jobrunner.local.engines.ngram_finetune:run",
    "sleep": "jobrunner.local.engines.sleep:run",
}

INLINE: frozenset[str] = frozenset({"echo"})

_cache: dict[str, Engine] = {}

_BAR_WIDTH = 10


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(done: int, total: int, elapsed: float, unit: str = "it") -> str:
    r"""A tqdm progress line, e.g. ` 50%|#####     | 2/4 [00:01<00:01,  2.00it/s]`.

    The official `replicate` client reads `prediction.progress` from the last log line matching
    `^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)`. The bar is ASCII (tqdm's `ascii=True`) so the
    line shows the same in any terminal encoding.
    """
    total = max(total, 1)
    done = min(max(done, 0), total)
    percent = 100 * done // total
    filled = _BAR_WIDTH * done // total
    bar = "#" * filled + " " * (_BAR_WIDTH - filled)
    rate = done / elapsed if elapsed > 0 else 0.0
    remaining = (total - done) / rate if rate > 0 else 0.0
    rate_text = f"{rate:5.2f}{unit}/s" if rate > 0 else f"?{unit}/s"
    return f"{percent:3d}%|{bar}| {done}/{total} [{_clock(elapsed)}<{_clock(remaining)}, {rate_text}]"


def resolve(target: str) -> Engine:
    """The engine function for a short name or a `module:function` path."""
    path = ENGINES.get(target, target)
    fn = _cache.get(path)
    if fn is None:
        module_name, _, attr = path.partition(":")
        if not attr:
            raise ModelError(f"unknown engine {target!r}")
        fn = getattr(importlib.import_module(module_name), attr)
        _cache[path] = fn
    return fn
