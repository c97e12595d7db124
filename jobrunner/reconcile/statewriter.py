"""Coalesced, ordered state saves for the concurrent apply engine.

Every create and every status change must reach disk before we move on (never lose a remote id),
but a batch of 10,000 items must not cost 10,000 full rewrites. Callers mutate the in-memory
document and `await writer.flush()`: concurrent callers that arrive while a save is pending share
that one save. The document is serialized on the event loop thread, so it is never seen
mid-change; when the store can split a save (`prepare` + `write_prepared`, as the local file
store does), the disk I/O (fsync, rename) then runs in one worker thread, in order, while the
loop goes on sending requests. Writes never overlap and never reorder: there is one writer
thread, and a save abandoned by a cancelled caller still completes before the next one.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

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
        self._io: ThreadPoolExecutor | None = None
        self._split = callable(getattr(store, "prepare", None)) and callable(getattr(store, "write_prepared", None))

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
            if self._split:
                # Shielded: a cancelled caller does not cancel a queued write.
                await asyncio.shield(asyncio.wrap_future(self._submit()))
            else:
                self.store.save(self.doc)
            self.saves += 1
            self._saved_gen = gen

    def flush_now(self) -> None:
        """Synchronous save (shutdown paths, Ctrl-C); waits for a write still in flight first."""
        gen = self._dirty_gen
        if self._split:
            self._submit().result()
        else:
            self.store.save(self.doc)
        self.saves += 1
        self._saved_gen = gen

    def _submit(self) -> "Future[None]":
        """Serialize now (on the caller's thread); queue the write behind any write in flight."""
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobrunner-state")
        # A failed write leaves a gap in the serials, which is harmless: the error ends the command.
        return self._io.submit(self.store.write_prepared, self.store.prepare(self.doc))

    def close(self) -> None:
        """Wait for queued writes and stop the writer thread (idempotent)."""
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None
