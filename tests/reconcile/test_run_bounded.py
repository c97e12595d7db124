"""`run_bounded`: apply works through a batch with a fixed number of workers, not a task per item."""
from __future__ import annotations

import asyncio

import pytest

from jobrunner.reconcile.pool import MIN_IN_FLIGHT, in_flight_limit, run_bounded


def test_results_keep_item_order_and_in_flight_never_exceeds_the_limit() -> None:
    running = peak = 0

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (i % 3))  # finish out of order
        running -= 1
        return i * i

    results = asyncio.run(run_bounded(list(range(200)), work, 7))
    assert results == [i * i for i in range(200)]
    assert peak == 7


def test_tasks_alive_stay_bounded_whatever_the_number_of_items() -> None:
    seen = []

    async def work(i: int) -> None:
        seen.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)

    asyncio.run(run_bounded(list(range(5000)), work, 10))
    assert max(seen) <= 10 + 1  # the workers and the main task


def test_an_exception_propagates() -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(0)
        if i == 3:
            raise ValueError("item 3")
        return i

    with pytest.raises(ValueError, match="item 3"):
        asyncio.run(run_bounded(list(range(20)), work, 4))


def test_empty_input_and_the_limit_for_a_parallelism() -> None:
    assert asyncio.run(run_bounded([], lambda i: asyncio.sleep(0), 5)) == []
    assert in_flight_limit(1) == MIN_IN_FLIGHT and in_flight_limit(100) == 6400
