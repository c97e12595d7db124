"""Creates and lookups of one provider's jobs of one kind must not overlap.

A lookup after an ambiguous create (dropped connection, 5xx) lists the provider's recent jobs and
adopts an unclaimed one that matches the request. Replicate has no idempotency key and no field to
tag a job with, so when several addresses send the very same request (samples of one prompt), a
sibling's job whose create answer is still on its way looks exactly like ours: adopting it leaves
two addresses on one job and ours untracked. The gate closes that window: creates hold it shared
from sending until their answer's remote id is recorded (claimed), and a lookup holds it alone,
so while it lists and matches every job of a successful create is already claimed, and every
other unclaimed match comes from a create that is itself ambiguous (whose job is as good as ours:
each lookup takes one, under the gate, and claims it).

Lookups wait for the creates in flight, and creates wait for queued lookups (a lookup is never
starved by a stream of creates). A create must leave the gate before it looks up.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class _Slot:
    def __init__(self) -> None:
        self.cond = asyncio.Condition()
        self.creating = 0
        self.looking = False
        self.lookups_waiting = 0


class CreateGate:
    """Shared for creates, exclusive for lookups, per key (provider, job kind, project)."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot] = {}

    def _slot(self, key: Hashable) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        return slot

    @contextlib.asynccontextmanager
    async def creating(self, key: Hashable) -> AsyncIterator[None]:
        """Held from sending a create until its remote id is recorded."""
        slot = self._slot(key)
        async with slot.cond:
            await slot.cond.wait_for(lambda: not slot.looking and slot.lookups_waiting == 0)
            slot.creating += 1
        try:
            yield
        finally:
            async with slot.cond:
                slot.creating -= 1
                slot.cond.notify_all()

    @contextlib.asynccontextmanager
    async def looking(self, key: Hashable) -> AsyncIterator[None]:
        """Held, alone, while listing, matching and claiming."""
        slot = self._slot(key)
        async with slot.cond:
            slot.lookups_waiting += 1
            try:
                await slot.cond.wait_for(lambda: not slot.looking and slot.creating == 0)
            finally:
                slot.lookups_waiting -= 1
                slot.cond.notify_all()  # a cancelled wait must not keep creates waiting
            slot.looking = True
        try:
            yield
        finally:
            async with slot.cond:
                slot.looking = False
                slot.cond.notify_all()
