"""Coalesced, ordered state saves for the concurrent apply engine.

Every create and every status change must reach disk before we move on (never lose a remote id),
but a batch of 10,000 items must not cost 10,000 full rewrites. Callers mutate the in-memory
document and `await writer.flush()`: concurrent callers share saves (group commit). A flush that
finds no save in flight starts one once the tasks ready in the same loop step have added their
changes; a flush that finds one in flight waits for it, and the first of its callers whose change
it does not hold starts the next, with every change made meanwhile. So a caller waits for at most
the write in flight and its own, and the saves are as few as the disk's pace allows: no fixed
delay is added (a 5 ms gathering window held each create's slot for two such delays, which, not
the CPU, bounded a 10,000-item apply's pace).

The document is serialized on the event loop thread, so it is never seen mid-change; when the
store can split a save (`prepare` + `write_prepared`, as the local file store does), the disk I/O
(fsync, rename) then runs in one worker thread, in order, while the loop goes on sending requests.
Writes never overlap and never reorder: there is one writer thread, and a save abandoned by a
cancelled caller still completes before the next one.

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
    def __init__(self, store, doc: StateDoc, *, window: float = 0.0) -> None:
        self.store = store
        # Seconds a save that starts with nothing in flight waits for more changes (0: only the
        # tasks ready in the same loop step).
        self.window = window
        self.doc = doc
        self._dirty_gen = 0
        # Addresses changed since the last save was prepared; None: unknown, save everything.
        self._changed: set[str] | None = set()
        self._saved_gen = 0
        self._inflight: asyncio.Future[None] | None = None  # the write in the thread, if any
        self._inflight_gen = 0  # the changes it holds
        self._waiters: list[asyncio.Future[None]] = []  # flushes waiting for the write in flight
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
        while self._saved_gen < target:
            inflight = self._inflight
            if inflight is not None:
                if inflight.done():  # written, its callback not run yet: settle it here
                    self._written(inflight, self._inflight_gen)
                    inflight.result()  # a failed write raises in every caller waiting on it
                    continue
                # A future of its own, resolved when the write ends: a cancelled caller cancels
                # only that one, never the write other callers wait for (what `asyncio.shield`
                # does, with two loop callbacks fewer per wait: a flush waits about twice an item).
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
                continue
            # Let the tasks ready in this step (siblings finishing together) add their changes.
            await asyncio.sleep(self.window)
            if self._inflight is None and self._saved_gen < target:
                self._start()

    def _start(self) -> None:
        """Save every change made so far: on the loop for a store that cannot split saves, else
        serialized here and written in the thread (`_inflight` until it is on disk)."""
        gen = self._dirty_gen
        if not self._split:
            self._save()
            self._saved(gen)
            return
        inflight = asyncio.wrap_future(self._submit())
        self._inflight, self._inflight_gen = inflight, gen
        inflight.add_done_callback(lambda done: self._written(done, gen))

    def _written(self, done: asyncio.Future[None], gen: int) -> None:
        """A write finished (called once or twice: by the loop, and by a flush that got there first)."""
        if self._inflight is not done:
            return
        self._inflight = None
        # A failed write raises in every caller waiting on it; the error ends the command.
        error = None if done.cancelled() else done.exception()
        if not done.cancelled() and error is None:
            self._saved(gen)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if done.cancelled():
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)

    def _saved(self, gen: int) -> None:
        self.saves += 1
        self._saved_gen = max(self._saved_gen, gen)

    def flush_now(self) -> None:
        """Synchronous save of the whole document (the start and end of a run, Ctrl-C): a
        journaling store compacts here. Waits for a write still in flight first."""
        self.touch()
        gen = self._dirty_gen
        if self._split:
            self._submit().result()
        else:
            self._save()
        self._saved(gen)

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
