"""Loading state without the cyclic garbage collector walking it over and over.

A state of 100,000 addresses is over a million small dicts, lists and objects, all alive for the
whole command and free of reference cycles. While they are being built, every few thousand
allocations the collector walks the young ones and every so often the whole growing heap: at
100,000 addresses that was more than half of the load's CPU (3.2 s of decoding became 0.9 s with
the collector off). Afterwards every full collection of the command (its plan, its apply) would
walk them again, for nothing.

So a load pauses the collector, and once a big document is built, moves everything alive into the
collector's permanent generation (`gc.freeze`): reference counting still frees those objects when
they are dropped; the collector just no longer examines them. Only big documents are frozen: a
garbage cycle that happens to be alive at that moment is never collected, which a command (one
load, then exit) does not notice but a long-lived process loading many small states (the test
suite) would.
"""
from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Below this many addresses a load is quick with the collector on; not worth freezing anything.
FREEZE_MIN_ADDRESSES = 5_000


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; then restore it as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def keep_out_of_collections(addresses: int) -> None:
    """After loading a document of `addresses` addresses: freeze what is alive if it is big."""
    if addresses >= FREEZE_MIN_ADDRESSES:
        gc.freeze()


def planned_without_collections(fn: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Run a planning coroutine with the collector paused, then freeze what it built if that is big.

    Planning a big batch builds a few objects per row (the row, its desired job, its change), all
    alive until the command ends and free of cycles: with the collector on, a 100,000-row plan
    spent about a fifth of its CPU walking them. `len()` of the result's `desired` (when it has
    one) says how big it was, as the address count does for a load.
    """
    @functools.wraps(fn)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with collector_paused():
            result = await fn(*args, **kwargs)
            desired = getattr(result, "desired", None)
            # Before the collector is back on, or its first pass walks everything built meanwhile.
            keep_out_of_collections(len(desired) if desired is not None else 0)
        return result

    return run


__all__ = ["FREEZE_MIN_ADDRESSES", "collector_paused", "keep_out_of_collections", "planned_without_collections"]
