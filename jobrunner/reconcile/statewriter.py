"""Coalesced, ordered state saves for the concurrent apply engine.

Every create and every status change must reach disk before we move on (never lose a remote id),
but a batch of 10,000 items must not cost 10,000 full rewrites. Callers mutate the in-memory
document and `await writer.flush()`: concurrent callers that arrive while a save is pending share
that one save. The document is serialized on the event loop thread, so it is never seen
mid-change; when the store can split a save (`prepare` + `write_prepared`, as the local file
store does), the disk I/O (fsync, rename) then runs in one worker thread, in order, while the
loop goes on sending requests. Writes never overlap and never reorder: there is one writer
thread, and a save abandoned by a cancelled caller still completes before the next one.

Callers name the addresses they changed (`flush(address)`): the save then hands the store only
those (`prepare(doc, changed)`), which a journaling store appends without looking at the others,
so a save costs what changed, not the size of the state. A flush naming no address (moves, the
end of a run, a caller that cannot tell) saves the whole document: slower, never wrong.
"""
from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import Future, ThreadPoolExecutor

from jobrunner.state.model import StateDoc


class StateWriter:
    def __init__(self, store, doc: StateDoc, *, window: float = 0.005) -> None:
        self.store = store
        self.window = window
        self.doc = doc
        self._dirty_gen = 0
        # Addresses changed since the last save was prepared; None: unknown, save everything.
        self._changed: set[str] | None = set()
        self._saved_gen = 0
        self._lock = asyncio.Lock()
        self.saves = 0
        self._io: ThreadPoolExecutor | None = None
        self._split = callable(getattr(store, "prepare", None)) and callable(getattr(store, "write_prepared", None))
        # Whether the store takes the changed addresses (a store that does not always saves everything).
        self._partial = _takes_changed(store.prepare if self._split else store.save)

    def touch(self, *addresses: str) -> None:
        """Record a change to `addresses` (none named: to anything)."""
        self._dirty_gen += 1
        if not addresses:
            self._changed = None
        elif self._changed is not None:
            self._changed.update(addresses)

    async def flush(self, *addresses: str) -> None:
        """Return once every change made before this call is on disk; `addresses`: the ones this
        caller changed (none named: the whole document is saved)."""
        self.touch(*addresses)
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
                self._save()
            self.saves += 1
            self._saved_gen = gen

    def flush_now(self) -> None:
        """Synchronous save of the whole document (the start and end of a run, Ctrl-C): a
        journaling store compacts here. Waits for a write still in flight first."""
        self.touch()
        gen = self._dirty_gen
        if self._split:
            self._submit().result()
        else:
            self._save()
        self.saves += 1
        self._saved_gen = gen

    def _take_changed(self) -> set[str] | None:
        changed, self._changed = self._changed, set()
        return changed if self._partial else None

    def _save(self) -> None:
        changed = self._take_changed()
        if changed is None:
            self.store.save(self.doc)
        else:
            self.store.save(self.doc, changed)

    def _submit(self) -> Future[None]:
        """Serialize now (on the caller's thread); queue the write behind any write in flight."""
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobrunner-state")
        changed = self._take_changed()
        prepared = self.store.prepare(self.doc) if changed is None else self.store.prepare(self.doc, changed)
        # A failed write leaves a gap in the serials, which is harmless: the error ends the command.
        return self._io.submit(self.store.write_prepared, prepared)

    def close(self) -> None:
        """Wait for queued writes and stop the writer thread (idempotent)."""
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None


def _takes_changed(method: object) -> bool:
    try:
        return "changed" in inspect.signature(method).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
