"""One provider client per provider name for the duration of a command, closed at the end; and
`run_bounded`, how apply works through the items of a batch with bounded work in flight."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items of one resource in flight at once (created and being waited on). Creates are bounded by
# `--parallelism` elsewhere; this bounds the memory and scheduling cost of the rest (a coroutine,
# its frames and buffers per item), so a 100,000-item batch costs what a 1,000-item one does per
# item. Waiting is in bulk (one list request serves many jobs), so this many running jobs are
# watched as cheaply as a few.
IN_FLIGHT_PER_PARALLEL = 64
MIN_IN_FLIGHT = 1024


def in_flight_limit(parallelism: int) -> int:
    return max(MIN_IN_FLIGHT, IN_FLIGHT_PER_PARALLEL * max(1, parallelism))


async def run_bounded(items: Sequence[T], work: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """`[await work(item) for item in items]`, at most `limit` at a time, results in item order.

    A fixed set of workers pull the next item as they finish one, instead of one task per item
    waiting on a semaphore. An exception from `work` propagates as from `asyncio.gather` (the
    other workers are not cancelled).
    """
    results: list[Any] = [None] * len(items)
    pending = iter(range(len(items)))

    async def worker() -> None:
        for i in pending:  # shared: each index is taken by exactly one worker
            results[i] = await work(items[i])

    await asyncio.gather(*(worker() for _ in range(min(max(1, limit), len(items)))))
    return results


class ProviderPool:
    def __init__(self, config: Any, root: Path) -> None:
        self.config = config
        self.root = root
        self._providers: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._providers:
            from jobrunner.providers.registry import get_provider

            self._providers[name] = get_provider(name, self.config, self.root)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            with contextlib.suppress(Exception):  # closing must never mask the command's own outcome
                await provider.aclose()
        self._providers.clear()
