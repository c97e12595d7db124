"""StateWriter with a store that splits saves: serialize on the loop, write in one thread, in order."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.state.local_file import LocalFileStore, read_state_json
from jobrunner.state.model import AddressState, StateDoc


def _st(i: int, status: str) -> AddressState:
    return AddressState(address=f"PredictionBatch/b[{i}]", kind="PredictionBatch", job_kind="prediction",
                        provider="local", file="b.yaml", status=status)


class SlowStore(LocalFileStore):
    """Records which thread wrote and in which order; each write takes a while."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written: list[int] = []
        self.threads: set[str] = set()

    def write_prepared(self, prepared) -> None:
        time.sleep(0.02)
        super().write_prepared(prepared)
        self.written.append(prepared.serial)
        self.threads.add(threading.current_thread().name)


def test_writes_run_off_the_loop_in_order_and_the_last_one_wins(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "state.json")
    doc = StateDoc(lineage="l")
    writer = StateWriter(store, doc, window=0)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:  # the loop keeps running while a write is in flight
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())

        async def item(i: int) -> None:
            doc.addresses[f"PredictionBatch/b[{i}]"] = _st(i, "starting")
            await writer.flush()
            doc.addresses[f"PredictionBatch/b[{i}]"].status = "succeeded"
            await writer.flush()

        await asyncio.gather(*(item(i) for i in range(20)))
        t.cancel()
        return ticks

    ticks = asyncio.run(main())
    assert ticks > 5
    assert store.written == sorted(store.written) and len(set(store.written)) == len(store.written)
    assert store.threads and threading.current_thread().name not in store.threads
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["serial"] == doc.serial
    assert {a["status"] for a in on_disk["addresses"].values()} == {"succeeded"}
    assert len(on_disk["addresses"]) == 20
    writer.close()


def test_a_cancelled_flush_still_writes_and_flush_now_waits_for_it(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "state.json")
    doc = StateDoc(lineage="l")
    writer = StateWriter(store, doc, window=0)

    async def main() -> None:
        doc.addresses["PredictionBatch/b[1]"] = _st(1, "starting")
        task = asyncio.create_task(writer.flush())
        await asyncio.sleep(0.005)  # the write is in flight in the thread
        task.cancel()
        doc.addresses["PredictionBatch/b[1]"].status = "succeeded"
        writer.flush_now()  # queued behind the in-flight write, and waited for

    asyncio.run(main())
    assert store.written == [1, 2]
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["addresses"]["PredictionBatch/b[1]"]["status"] == "succeeded"
    writer.close()


def test_stores_without_split_saves_are_saved_on_the_loop(tmp_path: Path) -> None:
    class Plain:
        def __init__(self) -> None:
            self.saved: list[int] = []

        def save(self, doc: StateDoc) -> None:
            doc.serial += 1
            self.saved.append(doc.serial)

    store = Plain()
    writer = StateWriter(store, StateDoc(lineage="l"), window=0)
    asyncio.run(writer.flush())
    writer.flush_now()
    assert store.saved == [1, 2]


def test_flushes_made_while_a_write_is_in_flight_share_the_next_write(tmp_path: Path) -> None:
    """Group commit: the first flush starts a write at once; every flush made while it is on its way
    waits for it and then shares one more write, which holds all their changes."""
    store = SlowStore(tmp_path / "state.json")
    doc = StateDoc(lineage="l")
    writer = StateWriter(store, doc)
    store.save(doc)  # the snapshot the journal records extend
    store.written.clear()

    async def main() -> None:
        doc.addresses["PredictionBatch/b[0]"] = _st(0, "starting")
        first = asyncio.create_task(writer.flush("PredictionBatch/b[0]"))
        await asyncio.sleep(0.005)  # the first write is in the thread now
        assert len(store.written) == 0

        async def later(i: int) -> None:
            doc.addresses[f"PredictionBatch/b[{i}]"] = _st(i, "starting")
            await writer.flush(f"PredictionBatch/b[{i}]")

        await asyncio.gather(first, *(later(i) for i in range(1, 6)))

    asyncio.run(main())
    assert len(store.written) == 2 and writer.saves == 2
    assert len(read_state_json(tmp_path / "state.json")["addresses"]) == 6
    writer.close()


def test_a_failed_write_raises_in_every_flush_waiting_on_it(tmp_path: Path) -> None:
    class Failing(SlowStore):
        def write_prepared(self, prepared) -> None:
            time.sleep(0.01)
            raise OSError("disk full")

    store = Failing(tmp_path / "state.json")
    doc = StateDoc(lineage="l")
    writer = StateWriter(store, doc)

    async def main() -> list[object]:
        return await asyncio.gather(*(writer.flush() for _ in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, OSError) for r in results), results
    writer.close()


def test_a_cancelled_waiter_leaves_the_write_and_the_other_waiters_alone(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "state.json")
    doc = StateDoc(lineage="l")
    writer = StateWriter(store, doc, window=0)

    async def main() -> list[object]:
        doc.addresses["PredictionBatch/b[1]"] = _st(1, "starting")
        first = asyncio.create_task(writer.flush("PredictionBatch/b[1]"))
        await asyncio.sleep(0.005)  # its write is in flight in the thread
        doc.addresses["PredictionBatch/b[2]"] = _st(2, "starting")
        waiting = [asyncio.create_task(writer.flush("PredictionBatch/b[2]")) for _ in range(3)]
        await asyncio.sleep(0.001)
        waiting[1].cancel()
        return await asyncio.gather(first, *waiting, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], asyncio.CancelledError)
    assert store.written == [1, 2]
    assert set(read_state_json(tmp_path / "state.json")["addresses"]) == {"PredictionBatch/b[1]",
                                                                          "PredictionBatch/b[2]"}
    writer.close()
