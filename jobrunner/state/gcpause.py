"""Loading state without the cyclic garbage collector walking it over and over.

A state of 100,000 addresses is over a million small dicts, lists and objects, all alive for the
whole command and free of reference cycles. While they are being built, every few thousand
allocations the collector walks the young ones and every so often the whole growing heap: at
100,000 addresses that was more than half of the load's CPU (3.2 s of decoding became 0.9 s with
the collector off). Afterwards every full collection of the command (its plan, its apply) would
walk them again, for nothing.

So a load pauses the collector and, once the document is built, moves everything alive into the
collector's permanent generation (`gc.freeze`): reference counting still frees those objects when
they are dropped; the collector just no longer examines them. Anything else alive at that moment
(modules, the CLI's objects) lives for the command anyway.
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; then freeze what is alive and restore it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


__all__ = ["collector_paused"]
