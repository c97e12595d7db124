"""Coalesced, ordered state saves for the concurrent apply engine.

Every create and every status change must reach disk before we move on (never lose a remote id),
but a batch of 10,000 items must not cost 10,000 full rewrites. Callers mutate the in-memory
document and `await writer.flush()`: concurrent callers that arrive while a save is pending share
that one save. Saves run on the event loop thread so the document is never serialized mid-change.
"""
from __future__ import annotations

import asyncio

from jobrunner.state.model import StateDoc


class StateWriter:
    def __init__(self, store, doc: StateDoc, *, window: float = 0.005) -> None:
        self.store = store
        self.window = window
        self.doc = doc
        self._dirty_gen = 0
        self._saved_gen = 0
        self._lock = asyncio.Lock()
        self.saves = 0

    def touch(self) -> None:
        self._dirty_gen += 1

    async def flush(self) -> None:
        """Return once every change made before this call is on disk."""
        self.touch()
        target = self._dirty_gen
        async with self._lock:
            if self._saved_gen >= target:
                return
            # Let other tasks pile their changes into this save: a few milliseconds of latency
            # turn N concurrent creates into one write instead of N.
            await asyncio.sleep(self.window)
            gen = self._dirty_gen
            self.store.save(self.doc)
            self.saves += 1
            self._saved_gen = gen

    def flush_now(self) -> None:
        """Synchronous save (shutdown paths, Ctrl-C)."""
        self.store.save(self.doc)
        self.saves += 1
        self._saved_gen = self._dirty_gen
